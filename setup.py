"""Installs fedmeta_tf. The pinned stack lives in requirements/ (see BUILD.md)."""
import setuptools

setuptools.setup(
    name="fedmeta_tf",
    version="0.1.0",
    description=(
        "Backdoor attacks on federated meta-learning and their defenses, "
        "in TensorFlow and TensorFlow Federated."
    ),
    packages=setuptools.find_packages(include=["fedmeta_tf", "fedmeta_tf.*", "binaries"]),
    # The Ravi & Larochelle mini-ImageNet class split (mini_imagenet.ravi_split).
    package_data={"fedmeta_tf.data": ["ravi_split.txt"]},
    python_requires=">=3.11,<3.12",
    install_requires=[
        "absl-py",
        "numpy>=1.25,<1.26",
        "tensorflow>=2.14,<2.15",
        "tensorflow-datasets",
        "matplotlib<3.10",
    ],
)
