r"""Starts TFF's C++ worker (from the installed package) on this host.

    python -m binaries.tff_worker --port=8000 [--max_concurrent_computation_calls=N]

Replaces this Python process by `tensorflow_federated/data/worker_binary`
(the same executable TFF's local context starts), which serves TFF
computations over gRPC on every interface of this host, port --port. The
training host then runs its rounds on the workers with
`python -m binaries.train_fedmeta --tff_workers=host1:8000,host2:8000 ...`
(BUILD.md, "Multi-machine runs"). Stop it with Ctrl-C or SIGTERM.

The port is unauthenticated and unencrypted: use a private network or an SSH
tunnel. Exits 2 with one line on a bad port, a port in use, or a missing
worker binary.
"""

import os
import socket
import sys

from absl import app
from absl import flags

from binaries import common
from binaries import quiet
from fedmeta_tf.tff_process import remote

_PORT = flags.DEFINE_integer("port", None,
                             "TCP port to serve on (all interfaces), 1..65535.")
_MAX_CONCURRENT = flags.DEFINE_integer(
    "max_concurrent_computation_calls", -1,
    "Most client computations this worker runs at once (<= 0: no limit, "
    "TFF's default); limit it to bound memory.")


def _check_port_free(port: int) -> None:
  family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET
  with socket.socket(family, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(("", port))
    except OSError as e:
      raise ValueError(f"--port={port} cannot be used on this host "
                       f"({e.strerror}); choose a free port") from e


def worker_argv(port: int, max_concurrent_computation_calls: int) -> list[str]:
  """The worker binary's command line."""
  return [remote.worker_binary_path(), f"--port={port}",
          f"--max_concurrent_computation_calls="
          f"{max_concurrent_computation_calls}"]


@common.user_errors_exit_2
def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments {argv[1:]}; flags only")
  if _PORT.value is None:
    raise ValueError("--port is required (e.g. --port=8000)")
  if not 1 <= _PORT.value <= 65535:
    raise ValueError(f"--port must be in 1..65535, got {_PORT.value}")
  _check_port_free(_PORT.value)
  args = worker_argv(_PORT.value, _MAX_CONCURRENT.value)
  print(f"tff_worker: serving TFF computations on port {_PORT.value} "
        f"({args[0]})", file=sys.stderr, flush=True)
  os.execv(args[0], args)


if __name__ == "__main__":
  # TF_CPP_MIN_LOG_LEVEL=1 for the worker binary this process becomes: no
  # INFO lines per computation (binaries/quiet.py).
  quiet.quiet_start()
  app.run(main, flags_parser=common.parse_flags)
