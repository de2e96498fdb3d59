"""audiossl: self-supervised audio pre-training (BEATs, EAT) and fine-tuning recipes."""
from setuptools import find_packages, setup

setup(
    name="audiossl",
    version="0.1.0",
    description="Kaldi/ESPnet-style recipes for BEATs and EAT audio pre-training and fine-tuning",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["audiossl", "audiossl.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch==2.11.0",
        "torchaudio==2.11.0",
        "kaldiio>=2.18",
        "sentencepiece>=0.2",
        "matplotlib>=3.7",
        "tensorboard>=2.14",
        "soundfile>=0.12",
        "numpy",
        "PyYAML>=6",
    ],
    extras_require={"test": ["pytest>=7", "pytest-timeout"]},
)
