// The API reference: Swagger UI over this server's own /openapi.json. validatorUrl null:
// Swagger UI would otherwise send the document to an online validator for its badge.
window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
    persistAuthorization: false,
    onComplete: () => {
      document.body.dataset.ready = "true";
    },
  });
});
