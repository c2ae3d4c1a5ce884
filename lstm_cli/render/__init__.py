"""Rich renderings, one module per result type. Pure functions of (result, console)."""
