#!/usr/bin/env bash
# REALM pre-training on a Cloud TPU VM (v4-8 / v5e-8 or a pod slice), data and indexes on GCS.
#
#   TPU_NAME=my-tpu ZONE=us-central2-b BUCKET=gs://my-bucket launch/tpu_vm.sh
#
# 1. Corpus + annotations on Dataflow (Beam), once:
#      python -m realm_tf.launch.build_corpus --inputs="$BUCKET/raw/*.jsonl" \
#        --output_dir="$BUCKET/corpus" --runner=DataflowRunner --project=... --region=... \
#        --temp_location="$BUCKET/tmp"
#      python -m realm_tf.launch.annotate_corpus --corpus_dir="$BUCKET/corpus" \
#        --output_dir="$BUCKET/annotations" --runner=DataflowRunner ...
# 2. Index refresh on a second TPU VM (or a GPU/CPU pool with --num_shards/--shard_index):
#      python -m realm_tf.launch.refresh_index --tpu=my-index-tpu --model_dir="$BUCKET/realm" \
#        --corpus_dir="$BUCKET/corpus" --index_dir="$BUCKET/index"
# 3. The trainer (this script).
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${BUCKET:?set BUCKET}"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e
  test -d realm_tf || git clone \${REALM_TF_REPO:-https://example.invalid/realm_tf.git} realm_tf
  cd realm_tf && make install
  .venv/bin/python -m realm_tf.launch.pretrain --tpu=local \
    --flagfile=launch/configs/paper_tpu.flags --work_dir=$BUCKET \
    --retriever_init=$BUCKET/bert_base_uncased --reader_init=$BUCKET/bert_base_uncased"
