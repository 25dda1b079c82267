"""One module per CLI command: parse arguments, call one library function, print."""
