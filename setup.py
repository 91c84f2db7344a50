"""Install the reusable core of the CasPL toolkit (`caspl`).

trainers/ and datasets/ stay plain folders next to train.py, as in the CoOp family: they are
imported from the repository root (train.py, scripts and tests run there).
"""

from setuptools import find_packages, setup

OPENCLIP = ["open_clip_torch>=3.0", "timm>=1.0"]

setup(
    name="caspl",
    version="0.1.0",
    description="Cascade Prompt Learning (CasPL) and the CoOp-family prompt learners on a lean Dassl-style engine",
    python_requires=">=3.10",
    packages=find_packages(include=["caspl", "caspl.*"]),
    package_data={"caspl": ["data/*.json", "vlm/weights_micro/*.safetensors"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "clip-anytorch>=2.6",
        # `import clip` imports pkg_resources, which setuptools 81 removed.
        "setuptools<81",
        "yacs>=0.1.8",
        "tabulate>=0.9",
        "tqdm>=4.60",
        "numpy>=1.24",
        "pillow>=9.0",
        "scipy>=1.10",
        "gdown>=4.7",
        "huggingface_hub>=0.20",
        "safetensors>=0.4",
        "tensorboard>=2.12",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
    ],
    extras_require={
        # open_clip teachers for phase 1 (TRAINER.CASPL.TEACHER.NAME open_clip:...); imported only for them.
        # SigLIP / multilingual teachers' tokenizers also need `transformers` (and sentencepiece).
        "openclip": OPENCLIP,
        "test": ["pytest>=7", "ruff>=0.5", *OPENCLIP],  # CI runs the open_clip teacher tests too
    },
)
