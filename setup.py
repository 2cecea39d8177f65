"""Packaging for cloudchain; tool settings live in pyproject.toml."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "cloudchain" / "_version.py").read_text()
).group(1)

# moto's `server` extra pulls in cfn-lint, docker, xray and more for services we never emulate;
# these are exactly what its server needs to serve DynamoDB, KMS and STS, at half the install.
LOCAL = ["moto[dynamodb,kms]>=5.0", "flask", "flask-cors"]
# cchain --render: Jinja2's sandbox.
TEMPLATE = ["jinja2>=3.1"]
# cchain --completion: argcomplete completes from cchain's own parser, in bash, zsh and fish.
COMPLETION = ["argcomplete>=3"]
# cchain-agent's /metrics, in the Prometheus text format.
AGENT = ["prometheus-client>=0.17"]
# make docs: the reference in docs/, built with MkDocs in strict mode.
DOCS = ["mkdocs>=1.5"]
# cchain --export --format yaml or k8s (PyYAML), properties (javaproperties).
FORMATS = ["PyYAML>=5.1", "javaproperties>=0.8"]
TEST = [
    *LOCAL,
    *TEMPLATE,
    *COMPLETION,
    *AGENT,
    *DOCS,
    *FORMATS,
    # Readers that check the exports, none of them our writer: python-hcl2 (tfvars) and
    # jproperties (properties); PyYAML's safe loader reads yaml and k8s.
    "python-hcl2>=8.1",
    "jproperties>=2.1",
    "pytest>=7",
    "pytest-xdist>=3",
    "hypothesis>=6",
    "python-dotenv>=1.2.3",  # the oldest that reads every dotenv cchain writes
    # The jsonPath of docs/kubernetes.md's External Secrets manifests, evaluated for real.
    "jsonpath-ng>=1.6",
    # The real AWS CLI, for the README's recovery recipe: a reader none of our code touches.
    "awscli>=1.29",
    # The real credstash, writing the tables --import-from credstash reads (it asks only
    # cryptography>=2.1, so it shares ours); never a dependency of the package.
    "credstash>=1.17",
    "ruff>=0.6",
    "mypy>=1.10",
    # A test runs setup.py itself; Python 3.12+ venvs come without setuptools.
    "setuptools>=61",
]

setup(
    name="cloudchain",
    version=VERSION,
    description="Application secrets encrypted with AWS KMS and stored in DynamoDB",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",  # boto3 and botocore support 3.10+
    packages=find_packages(include=["cloudchain", "cloudchain.*"]),
    package_data={"cloudchain": ["py.typed"]},
    # cryptography: AES-256-GCM for envelope-encrypted (large) secrets, imported only for them.
    install_requires=["boto3>=1.28", "botocore>=1.31", "cryptography>=41"],
    extras_require={
        "local": LOCAL,
        "template": TEMPLATE,
        "completion": COMPLETION,
        "agent": AGENT,
        "docs": DOCS,
        "formats": FORMATS,
        "test": TEST,
        "dev": TEST,
    },
    entry_points={
        "console_scripts": [
            "cchain = cloudchain.cli:run",
            "cchain-local = cloudchain.local:main",
            "cchain-agent = cloudchain.agent.main:main",
        ]
    },
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Security :: Cryptography",
    ],
)
