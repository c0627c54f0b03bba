"""The user documentation shipped with the package (README.md and docs/*.md, linked here from the repository so a
wheel carries them): `edgedeploy docs` lists and prints them."""
