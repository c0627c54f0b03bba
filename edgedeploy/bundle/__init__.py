"""Bundles: everything a device needs to build and validate a model without PyTorch (make.py writes one on the
workstation, manifest.py opens and checks one, device.py builds from one on the device)."""
