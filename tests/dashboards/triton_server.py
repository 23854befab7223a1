"""A real Triton Inference Server on CPU (via PyTriton) serving a tiny identity model.

Usage: triton_server.py HTTP_PORT GRPC_PORT METRICS_PORT
Binds every endpoint to 127.0.0.1. SIGTERM shuts Triton down cleanly (PyTriton only reacts to
SIGINT/KeyboardInterrupt by itself), so the harness can stop it without leaving tritonserver behind.
"""

import signal
import sys

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def _raise_keyboard_interrupt(_signum, _frame):
    raise KeyboardInterrupt


@batch
def identity(data):
    # A request whose first element is negative fails inside the model, so Triton counts a
    # failure with a real reason label.
    if np.any(data[:, 0] < 0):
        raise ValueError("negative input rejected by the identity model")
    return {"out": data}


def main() -> int:
    http_port, grpc_port, metrics_port = (int(p) for p in sys.argv[1:4])
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=http_port,
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=metrics_port,
        allow_cpu_metrics=True,
        metrics_interval_ms=1000,
    )
    try:
        with Triton(config=config) as triton:
            triton.bind(
                model_name="identity",
                infer_func=identity,
                inputs=[Tensor(name="data", dtype=np.float32, shape=(-1,))],
                outputs=[Tensor(name="out", dtype=np.float32, shape=(-1,))],
                config=ModelConfig(max_batch_size=8),
            )
            print("triton ready", flush=True)
            triton.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
