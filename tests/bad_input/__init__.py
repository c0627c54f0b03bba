"""The bad-input matrix: each way a build, validate, debug or optimize can be fed bad input or hit a fault, run
through the real command line (tests/bad_input/test_<surface>.py, one module per surface; matrix.py
holds the models, the bench and the one check every case goes through), as a careless user and as an attacker would: configs, ONNX files, checkpoints,
calibration and validation data, reference.npz, baselines and manifests that are damaged, hostile or not files at all
(FIFOs, devices), output paths that are symbolic links, the root, under a file or inside a build folder, planted lock
and staging links, and a build and a validate of one folder at once (both orders).

A refused case exits 2 (usage error) or 1 (failure) with one `error:` line naming the file, tensor or node and
saying what to do, no traceback and never `internal error`, and an output folder that held a finished build (and any
other path the case names in `Run.keep`) is left byte for byte with no staging leftovers; a handled fault (a stale or
corrupt calibration cache entry, a planted staging link) exits 0 and the report says what was done. A build killed with
SIGKILL mid-stage has its own test. tools/bad_input_table.py prints the matrix as a case → exit → message table with
its counts (each case appends its row to the file named by EDGEDEPLOY_BAD_INPUT_TABLE).

Builds are of two-node ONNX models made here with onnx.helper (seconds each); only the checkpoint cases import
torch.
"""
