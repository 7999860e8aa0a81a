"""minireg's version, in a module of its own so that the modules that write it (minireg.io into saved
runs, minireg.report into pages, the CLI's --version) need not import the package's __init__,
which imports them."""
__version__ = "0.1.0"
