"""fedmeta_tf: backdoor attacks on federated meta-learning and their defenses.

Importing the package installs the cleanup of TFF's worker subprocess (see
`fedmeta_tf.tff_process.workers`), so no program of ours leaves one behind.
"""

from fedmeta_tf.tff_process import workers as _workers

_workers.install_cleanup_handlers()
