"""One subpackage per paper; see methods/catalogue.toml for the 52 papers of the project."""
