r"""Achieved FLOP/s of the inner loop vs a plain matmul on the same machine.

    .venv/bin/python -m benchmarks.flops [--quick]
        [--shapes=28x28x1:10,64x64x3:6,84x84x3:10] [--variants=maxpool,strided]
        [--steps=200] [--matmul_size=2048]

Prints the machine, then:
  - the reference: FLOP/s of float32 `tf.matmul` (n x n, 2 n^3 FLOPs each)
    repeated in one tf.function -- what this machine's TensorFlow reaches on
    its best-tuned kernel;
  - for each image shape / batch and Conv4 variant: the FLOPs of one SGD
    step (TensorFlow's profiler counts the forward pass of one batch:
    convolutions, batch norm, pooling, dense; a step is counted as 3x the
    forward pass -- forward, input gradient, weight gradient -- the usual
    convention, which slightly overcounts the first layer), the in-graph
    inner loop's steps/s (`benchmarks.workloads.inner_loop_rates`), the
    achieved GFLOP/s and its fraction of the matmul figure.
Every timing is the best of 3 (the machine may be shared).
--quick: --steps=40 --matmul_size=1024 and the 28x28 shape only.
"""


from absl import app
from absl import flags

from benchmarks import machine
from benchmarks import workloads
from binaries import common

_SHAPES = flags.DEFINE_list(
    "shapes", ["28x28x1:10", "64x64x3:6", "84x84x3:10"],
    "Image shapes and batch sizes, HxWxC:batch.")
_VARIANTS = flags.DEFINE_list("variants", ["maxpool", "strided"],
                              "Conv4 variants.")
_STEPS = flags.DEFINE_integer("steps", 200, "Inner steps timed per setting.")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", 2048,
                                    "n of the n x n reference matmul.")
_QUICK = flags.DEFINE_bool(
    "quick", False, "--steps=40 --matmul_size=1024, 28x28x1:10 only.")


@common.user_errors_exit_2
def main(argv):
  del argv
  steps, size, shapes = _STEPS.value, _MATMUL_SIZE.value, _SHAPES.value
  if _QUICK.value:
    steps, size, shapes = 40, 1024, ["28x28x1:10"]
  if steps < 1 or size < 16:
    raise ValueError("--steps must be >= 1 and --matmul_size >= 16")
  shapes = [workloads.parse_shape(s) for s in shapes]
  machine.print_machine()
  peak = workloads.matmul_flops_per_second(size)
  print(f"reference: float32 matmul {size}x{size}: {peak / 1e9:7.1f} GFLOP/s",
        flush=True)
  for shape, batch in shapes:
    for variant in _VARIANTS.value:
      step_flops = workloads.step_flops(shape, batch, variant)
      rate, _ = workloads.inner_loop_rates(shape, batch, variant, steps, 0)
      achieved = step_flops * rate
      print(f"inner loop, Conv4 {variant:8s} {'x'.join(map(str, shape)):8s} "
            f"batch {batch:2d}: {step_flops / 1e6:7.1f} MFLOP/step x "
            f"{rate:6.1f} steps/s = {achieved / 1e9:6.1f} GFLOP/s, "
            f"{achieved / peak:.0%} of matmul", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
