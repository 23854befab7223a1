"""A real Triton Inference Server (through PyTriton, on CPU) serving one tiny model, for every
test that needs Triton: the agent's Triton test (agent/tests/triton.rs) and the dashboard proof
(tests/dashboards/prove.py).

Usage: serve.py HTTP_PORT GRPC_PORT METRICS_PORT

Serves the model `identity` on 127.0.0.1 (input `data`, FP32 rows; output `out`, the same rows)
with CPU metrics every second, and prints `READY` once it accepts requests. A request whose first
element is negative fails inside the model, so Triton counts a failure with a real reason.
SIGTERM or SIGINT stop Triton cleanly (tritonserver and its backend stubs included) and print
`STOPPED`.
"""

import os
import signal
import sys
import sysconfig
import threading

# PyTriton's tritonserver and its Python backend stub link against this interpreter's libpython;
# a pyenv interpreter keeps it outside the default library path. They inherit this environment.
_libdir = sysconfig.get_config_var("LIBDIR") or ""
if _libdir:
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (_libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)

import numpy as np  # noqa: E402
from pytriton.decorators import batch  # noqa: E402
from pytriton.model_config import ModelConfig, Tensor  # noqa: E402
from pytriton.triton import Triton, TritonConfig  # noqa: E402


@batch
def identity(data):
    if np.any(data[:, 0] < 0):
        raise ValueError("negative input rejected by the identity model")
    return {"out": data}


def main() -> int:
    http_port, grpc_port, metrics_port = (int(p) for p in sys.argv[1:4])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=http_port,
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=metrics_port,
        allow_metrics=True,
        allow_cpu_metrics=True,
        metrics_interval_ms=1000,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name="identity",
            infer_func=identity,
            inputs=[Tensor(name="data", dtype=np.float32, shape=(-1,))],
            outputs=[Tensor(name="out", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=8),
        )
        triton.run()
        print("READY", flush=True)
        stop.wait()
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
