#!/usr/bin/env node
// Compile the devnet contracts offline with the pinned solcjs and write
// contracts/artifacts/<Name>.json. Run from anywhere: `node contracts/build.mjs`.
// `--check` compiles and compares with the committed artifacts instead of writing.
//
// Sources: contracts/src/*.sol (ours), @openzeppelin/contracts from node_modules, and
// MockV3Aggregator + Multicall3 from @chainlink/contracts. That package cannot be
// `npm install`ed offline (one of its dependencies is a GitHub tarball), so it is
// `npm pack`ed into build/, checked against the pinned integrity and unpacked there.
//
// Protocols: Morpho Blue is compiled from @morpho-org/morpho-blue's sources with the
// compiler and settings Morpho pins (solc 0.8.19, via-IR, 999999 runs, paris, no
// metadata hash: its foundry.toml); Aave v3 ships compiled artifacts in @aave/core-v3,
// which are copied (ABI, bytecode with its library link references) rather than rebuilt.

import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import solc from "solc";
import solcMorpho from "solc-0.8.19";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const BUILD = join(ROOT, "build");
const OUT = join(ROOT, "contracts", "artifacts");

const SOLC_VERSION = "0.8.30+commit.73712a01";
const OPENZEPPELIN_VERSION = "5.4.0";
const MORPHO = { version: "1.0.0", solc: "0.8.19+commit.7dd6d404" };
const AAVE = { version: "1.19.3" };
const CHAINLINK = {
  spec: "@chainlink/contracts@1.5.0",
  tarball: "chainlink-contracts-1.5.0.tgz",
  dir: "chainlink-contracts-1.5.0",
  integrity:
    "sha512-1fGJwjvivqAxvVOTqZUEXGR54CATtg0vjcXgSIk4Cfoad2nUhSG/qaWHXjLg1CkNTeOoteoxGQcpP/HiA5HsUA==",
};

// Fixed compiler settings. evmVersion cancun: runs on anvil's default hardfork (the
// latest one) and on every chain the devnet imitates; no newer opcode is needed.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  metadata: { bytecodeHash: "ipfs" },
};

// Source unit name -> contract name. Order is the artifact order; names are unique.
const TARGETS = [
  ["contracts/src/DevToken.sol", "DevToken"],
  ["contracts/src/DevDebtToken.sol", "DevDebtToken"],
  // Tokens that misbehave in the ways real ones do (tests/adapters deploy them).
  ["contracts/src/weird/Bytes32Token.sol", "Bytes32Token"],
  ["contracts/src/weird/NoDecimalsToken.sol", "NoDecimalsToken"],
  ["contracts/src/weird/BrokenToken.sol", "BrokenToken"],
  ["contracts/src/weird/ProxiedToken.sol", "ProxiedToken"],
  ["contracts/src/weird/DevVault.sol", "DevVault"],
  ["contracts/src/weird/NativeAliasToken.sol", "NativeAliasToken"],
  ["contracts/src/weird/LyingToken.sol", "LyingToken"],
  ["@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol", "ERC1967Proxy"],
  // The transparency log's anchor (tests/api/test_tlog_anchor.py deploys it).
  ["contracts/src/tlog/TreeHeadAnchor.sol", "TreeHeadAnchor"],
  // Price feeds beyond MockV3Aggregator (tests/oracle deploy them).
  ["contracts/src/oracle/DevAggregator.sol", "DevAggregator"],
  ["contracts/src/oracle/DevPyth.sol", "DevPyth"],
  ["@chainlink/contracts/src/v0.8/shared/mocks/MockV3Aggregator.sol", "MockV3Aggregator"],
  ["@chainlink/contracts/src/v0.8/vendor/multicall/ebd8b64/src/Multicall3.sol", "Multicall3"],
  // Glue for the protocols on the devnet: a Morpho oracle over two Chainlink feeds.
  ["contracts/src/protocols/FeedRatioOracle.sol", "FeedRatioOracle"],
  // Test-only: Morpho's MorphoBalancesLib as views (tests/devnet compare the codecs with it).
  ["contracts/src/protocols/MorphoLens.sol", "MorphoLens"],
];

// Morpho Blue with Morpho's own compiler and settings (morpho-blue's foundry.toml).
const MORPHO_SETTINGS = {
  viaIR: true,
  optimizer: { enabled: true, runs: 999999 },
  evmVersion: "paris",
  metadata: { bytecodeHash: "none" },
};
const MORPHO_TARGETS = [
  ["@morpho-org/morpho-blue/src/Morpho.sol", "Morpho"],
  // The package's own interest rate model (utilisation x% -> x% APR): Morpho's
  // AdaptiveCurveIrm lives in another repository that is not on npm.
  ["@morpho-org/morpho-blue/src/mocks/IrmMock.sol", "IrmMock"],
];

// Aave v3 artifacts copied from @aave/core-v3 (path under its artifacts/contracts/).
const AAVE_ARTIFACTS = [
  "protocol/configuration/PoolAddressesProvider.sol/PoolAddressesProvider",
  "protocol/configuration/ACLManager.sol/ACLManager",
  "protocol/configuration/PriceOracleSentinel.sol/PriceOracleSentinel",
  "protocol/libraries/logic/SupplyLogic.sol/SupplyLogic",
  "protocol/libraries/logic/BorrowLogic.sol/BorrowLogic",
  "protocol/libraries/logic/LiquidationLogic.sol/LiquidationLogic",
  "protocol/libraries/logic/EModeLogic.sol/EModeLogic",
  "protocol/libraries/logic/BridgeLogic.sol/BridgeLogic",
  "protocol/libraries/logic/FlashLoanLogic.sol/FlashLoanLogic",
  "protocol/libraries/logic/PoolLogic.sol/PoolLogic",
  "protocol/libraries/logic/ConfiguratorLogic.sol/ConfiguratorLogic",
  "protocol/pool/Pool.sol/Pool",
  "protocol/pool/L2Pool.sol/L2Pool",
  "protocol/pool/PoolConfigurator.sol/PoolConfigurator",
  "protocol/pool/DefaultReserveInterestRateStrategy.sol/DefaultReserveInterestRateStrategy",
  "protocol/tokenization/AToken.sol/AToken",
  "protocol/tokenization/StableDebtToken.sol/StableDebtToken",
  "protocol/tokenization/VariableDebtToken.sol/VariableDebtToken",
  "misc/AaveOracle.sol/AaveOracle",
  "misc/AaveProtocolDataProvider.sol/AaveProtocolDataProvider",
];

function fail(message) {
  console.error(`contracts/build.mjs: ${message}`);
  process.exit(1);
}

function integrityOf(bytes) {
  return "sha512-" + createHash("sha512").update(bytes).digest("base64");
}

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
}

// Minimal ustar/pax reader: enough for an npm tarball, refuses paths leaving `dest`.
function untar(gz, dest) {
  const buf = gunzipSync(gz);
  const cstr = (b) => b.toString("utf8").replace(/\0.*$/s, "");
  let pax = null;
  for (let off = 0; off + 512 <= buf.length; ) {
    const h = buf.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    const size = parseInt(cstr(h.subarray(124, 136)).trim() || "0", 8);
    const type = String.fromCharCode(h[156] || 48);
    const ustar = cstr(h.subarray(257, 263)) === "ustar";
    const prefix = ustar ? cstr(h.subarray(345, 500)) : "";
    let name = (prefix ? prefix + "/" : "") + cstr(h.subarray(0, 100));
    const body = buf.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === "x") {
      pax = Object.fromEntries(
        [...body.toString("utf8").matchAll(/^\d+ ([^=]+)=(.*)$/gm)].map((m) => [m[1], m[2]]),
      );
      continue;
    }
    if (pax?.path) name = pax.path;
    pax = null;
    if (type !== "0" || !name.startsWith("package/")) continue;
    const rel = normalize(name.slice("package/".length));
    if (rel.startsWith("..") || rel.startsWith(sep)) fail(`unsafe path in tarball: ${name}`);
    mkdirSync(dirname(join(dest, rel)), { recursive: true });
    writeFileSync(join(dest, rel), body);
  }
}

function chainlinkSources() {
  mkdirSync(BUILD, { recursive: true });
  const tgz = join(BUILD, CHAINLINK.tarball);
  if (!existsSync(tgz) || integrityOf(readFileSync(tgz)) !== CHAINLINK.integrity) {
    console.error(`fetching ${CHAINLINK.spec} with npm pack into build/`);
    execFileSync("npm", ["pack", CHAINLINK.spec, "--pack-destination", BUILD, "--loglevel=warn"], {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
  const got = integrityOf(readFileSync(tgz));
  if (got !== CHAINLINK.integrity) {
    fail(`${tgz}: integrity mismatch\n  expected ${CHAINLINK.integrity}\n  got      ${got}`);
  }
  const dir = join(BUILD, CHAINLINK.dir);
  const stamp = join(dir, ".integrity");
  if (!existsSync(stamp) || readFileSync(stamp, "utf8") !== CHAINLINK.integrity) {
    untar(readFileSync(tgz), dir);
    writeFileSync(stamp, CHAINLINK.integrity);
  }
  return dir;
}

function packageVersion(name) {
  const path = join(ROOT, "node_modules", ...name.split("/"), "package.json");
  if (!existsSync(path)) fail(`node_modules/${name} is missing (run make setup)`);
  return JSON.parse(readFileSync(path, "utf8")).version;
}

function checkVersions() {
  if (solc.version() !== `${SOLC_VERSION}.Emscripten.clang`) {
    fail(`solc ${solc.version()} is installed, ${SOLC_VERSION} is pinned (run make setup)`);
  }
  if (solcMorpho.version() !== `${MORPHO.solc}.Emscripten.clang`) {
    fail(`solc-0.8.19 is ${solcMorpho.version()}, ${MORPHO.solc} is pinned (run make setup)`);
  }
  const pinned = [
    ["@openzeppelin/contracts", OPENZEPPELIN_VERSION],
    ["@morpho-org/morpho-blue", MORPHO.version],
    ["@aave/core-v3", AAVE.version],
  ];
  for (const [name, want] of pinned) {
    const got = packageVersion(name);
    if (got !== want) fail(`${name} ${got} is installed, ${want} is pinned (run make setup)`);
  }
}

// One solc run: `targets` ([unit, name]) with `settings`, imports from `roots`.
function compileWith(compiler, version, settings, targets, roots) {
  const texts = new Map();
  const read = (unit) => {
    for (const [prefix, dir] of roots) {
      if (unit.startsWith(prefix)) {
        const rel = normalize(unit.slice(prefix.length));
        if (rel.startsWith("..")) break;
        const text = readFileSync(join(dir, rel), "utf8");
        texts.set(unit, text);
        return text;
      }
    }
    throw new Error(`import outside the known roots: ${unit}`);
  };
  const input = {
    language: "Solidity",
    sources: Object.fromEntries(targets.map(([unit]) => [unit, { content: read(unit) }])),
    settings: {
      ...settings,
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"] },
      },
    },
  };
  const findImports = (unit) => {
    try {
      return { contents: read(unit) };
    } catch (err) {
      return { error: String(err.message ?? err) };
    }
  };
  const output = JSON.parse(compiler.compile(JSON.stringify(input), { import: findImports }));
  // Show every error and our own warnings; vendored sources' known warnings (Multicall3
  // reads block.difficulty) are only counted.
  const problems = output.errors ?? [];
  const vendored = (p) => p.severity !== "error" && !p.sourceLocation?.file?.startsWith("contracts/");
  for (const p of problems.filter((p) => !vendored(p))) console.error(p.formattedMessage ?? p.message);
  const quiet = problems.filter(vendored).length;
  if (quiet) console.error(`(${quiet} warning(s) in vendored sources not shown)`);
  if (problems.some((p) => p.severity === "error")) fail("compilation failed");

  const artifacts = new Map();
  for (const [unit, name] of targets) {
    const c = output.contracts?.[unit]?.[name];
    if (!c) fail(`no output for ${unit}:${name}`);
    const used = Object.keys(JSON.parse(c.metadata).sources).sort();
    artifacts.set(name, {
      contractName: name,
      sourceName: unit,
      sourceSha256: sha256(texts.get(unit)),
      compiler: { name: "solc", version },
      settings,
      sources: Object.fromEntries(used.map((u) => [u, { sha256: sha256(texts.get(u)) }])),
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    });
  }
  return artifacts;
}

function compile() {
  checkVersions();
  const chainlinkDir = chainlinkSources();
  const modules = join(ROOT, "node_modules");
  const roots = [
    ["@openzeppelin/contracts/", join(modules, "@openzeppelin", "contracts")],
    ["@chainlink/contracts/", chainlinkDir],
    ["@morpho-org/morpho-blue/", join(modules, "@morpho-org", "morpho-blue")],
    ["contracts/src/", join(ROOT, "contracts", "src")],
  ];
  const ours = compileWith(solc, SOLC_VERSION, SETTINGS, TARGETS, roots);
  const morpho = compileWith(solcMorpho, MORPHO.solc, MORPHO_SETTINGS, MORPHO_TARGETS, roots);
  return new Map([...ours, ...morpho, ...aaveArtifacts()]);
}

// The Aave artifacts as shipped, trimmed to what deploying needs. Unlinked library
// references stay as placeholders; linkReferences says where each library's address goes.
function aaveArtifacts() {
  const base = join(ROOT, "node_modules", "@aave", "core-v3", "artifacts", "contracts");
  const artifacts = new Map();
  for (const rel of AAVE_ARTIFACTS) {
    const path = join(base, `${rel}.json`);
    const text = readFileSync(path, "utf8");
    const art = JSON.parse(text);
    const dbg = JSON.parse(readFileSync(join(base, `${rel}.dbg.json`), "utf8"));
    const info = buildInfo(join(dirname(path), dbg.buildInfo));
    const { optimizer, evmVersion } = info.input.settings;
    artifacts.set(art.contractName, {
      contractName: art.contractName,
      sourceName: `@aave/core-v3/${art.sourceName}`,
      package: `@aave/core-v3@${AAVE.version}`,
      packageArtifactSha256: sha256(text),
      compiler: { name: "solc", version: info.solcLongVersion },
      settings: { optimizer, evmVersion },
      abi: art.abi,
      bytecode: art.bytecode,
      deployedBytecode: art.deployedBytecode,
      linkReferences: art.linkReferences,
      deployedLinkReferences: art.deployedLinkReferences,
    });
  }
  return artifacts;
}

const buildInfos = new Map();
function buildInfo(path) {
  if (!buildInfos.has(path)) buildInfos.set(path, JSON.parse(readFileSync(path, "utf8")));
  return buildInfos.get(path);
}

function main() {
  const check = process.argv.includes("--check");
  const artifacts = compile();
  mkdirSync(OUT, { recursive: true });
  let stale = 0;
  for (const [name, artifact] of artifacts) {
    const path = join(OUT, `${name}.json`);
    const text = JSON.stringify(artifact, null, 2) + "\n";
    if (check) {
      if (!existsSync(path) || readFileSync(path, "utf8") !== text) {
        console.error(`stale: contracts/artifacts/${name}.json`);
        stale += 1;
      }
    } else {
      writeFileSync(path, text);
      console.log(`wrote contracts/artifacts/${name}.json`);
    }
  }
  if (stale) fail(`${stale} artifact(s) differ from a fresh build; run: node contracts/build.mjs`);
}

main();
