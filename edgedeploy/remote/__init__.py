"""Running edgedeploy on a device over the user's own OpenSSH client (ssh.py) and the build / validate round trip
(run.py)."""
