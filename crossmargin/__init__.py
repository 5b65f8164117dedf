"""crossmargin."""
