"""grpc_echo.proto compiled with grpcio-tools, for grpc_echo_server.py and
grpc_echo_check.py.

The generated modules are cached in the Python environment (under sys.prefix, keyed
by the proto's hash and grpcio-tools' version), so a changed proto is compiled anew
and no generated code is checked in. Compilation goes to a temporary directory that
is renamed into place, so concurrent first uses never see half a result.

    from grpc_echo_pb import pb, pb_grpc
"""

import hashlib
import importlib
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "grpc_echo.proto"


def _compile():
    from importlib.metadata import version

    from grpc_tools import protoc

    with open(os.path.join(HERE, PROTO), "rb") as f:
        src = f.read()
    key = hashlib.sha256(src).hexdigest()[:16] + "-" + version("grpcio-tools")
    out = os.path.join(sys.prefix, "brownout-gen", key)
    if not os.path.isfile(os.path.join(out, "grpc_echo_pb2_grpc.py")):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="gen-", dir=os.path.dirname(out))
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{HERE}",
                f"--python_out={tmp}",
                f"--grpc_python_out={tmp}",
                os.path.join(HERE, PROTO),
            ]
        )
        if rc != 0:
            raise RuntimeError(f"protoc failed on {PROTO} ({rc})")
        try:
            os.rename(tmp, out)
        except OSError:
            # Another process got there first; its result is the same.
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return out


sys.path.insert(0, _compile())
pb = importlib.import_module("grpc_echo_pb2")
pb_grpc = importlib.import_module("grpc_echo_pb2_grpc")
