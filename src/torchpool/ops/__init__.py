"""One module per pooling family, each holding its functions and Modules."""
