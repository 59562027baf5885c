from pathlib import Path

from setuptools import find_packages, setup


def requirements(name: str) -> list[str]:
    lines = (Path(__file__).parent / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="stilts-jax",
    version="0.1.0",
    description="English intermediate-task training for zero-shot cross-lingual transfer (XTREME, XTREME-R) in JAX/Flax",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    license="Apache-2.0",
    packages=find_packages(include=["stilts_jax", "stilts_jax.*"]),
    package_data={
        "stilts_jax": [
            "assets/text/*.txt",
            "assets/tokenizer/*",
            "assets/demo/*/*.json",
            "assets/demo/*/*.jsonl",
            "assets/demo/*/*.tsv",
            "assets/demo/*/*/*.json",
            "assets/demo/*/*/*.parquet",
            "assets/model_configs/*/config.json",
        ]
    },
    install_requires=requirements("requirements.txt"),
    extras_require={
        "test": requirements("requirements-test.txt"),
        "gpu": ["jax[cuda13]"],
        "tpu": ["jax[tpu]"],
        # Weights & Biases logging (logging.wandb), off unless set; `pip install "stilts-jax[wandb]"`.
        "wandb": ["wandb>=0.29"],
    },
)
