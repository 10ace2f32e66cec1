#!/usr/bin/env bash
# REALM pre-training on a Cloud TPU VM: one host (v4-8, v5e-8, ...) or a multi-host pod slice.
# Never run on a TPU (none was available): it follows Cloud TPU's documentation for TensorFlow on
# TPU VMs; its control flow is tested with a stand-in gcloud (tests/test_tpu_vm_script.py) and the
# programs it starts are tested on CPU.
#
#   TPU_NAME=my-tpu ZONE=us-central2-b BUCKET=gs://my-bucket launch/tpu_vm.sh
#
# Create the TPU VM with a TensorFlow runtime image: `tpu-vm-tf-2.20.0-pjrt` for one host,
# `tpu-vm-tf-2.20.0-pod-pjrt` for a pod slice. The script installs the project on every host
# (`make install`, plus Beam's Cloud Storage and Dataflow support: the `gcp` extra) and swaps its
# TensorFlow for `tensorflow-tpu==2.20.0`, the same TensorFlow built with the TPU runtime (it pulls
# `libtpu` from PyPI).
#
# One host: the trainer runs there with --tpu=local.
# A pod slice: TensorFlow 2 drives every host's TPU chips from ONE client process. The trainer
# runs on worker 0 only, with --tpu=$TPU_NAME (TPUClusterResolver finds the other hosts); each
# host runs a tf.data service worker (`realm_tf.launch.data_service_worker`, which registers the
# TF.Text and ScaNN ops the input pipeline needs) and worker 0 also the dispatcher, so query
# masking, embedding and ScaNN search are spread over every host's CPUs; the block lookup's
# gathers run in the client. Starting one trainer per host (--worker=all) would start that many
# independent jobs on one work dir.
#
# Before this script, once:
# 1. Corpus + annotations on Dataflow (Beam):
#      python -m realm_tf.launch.build_corpus --inputs="$BUCKET/raw/*.jsonl" \
#        --output_dir="$BUCKET/corpus" --block_length=288 --runner=DataflowRunner \
#        --project=... --region=... --temp_location="$BUCKET/tmp"
#      python -m realm_tf.launch.annotate_corpus --corpus_dir="$BUCKET/corpus" \
#        --output_dir="$BUCKET/annotations" --runner=DataflowRunner ...
# 2. Index refresh beside the trainer (another TPU VM, or a GPU/CPU pool with
#    --num_shards/--shard_index), reading the trainer's exports:
#      python -m realm_tf.launch.refresh_index --tpu=my-index-tpu --work_dir="$BUCKET"
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}" "${BUCKET:?set BUCKET}"
REPO="${REALM_TF_REPO:-https://example.invalid/realm_tf.git}"
DISPATCHER_PORT="${DISPATCHER_PORT:-5050}"
WORKER_PORT="${WORKER_PORT:-5051}"

ssh_tpu() {  # ssh_tpu <worker: all|0|i> <command>
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker="$1" --command="$2"
}

# The hosts of the slice, from the TPU's network endpoints (one per host).
mapfile -t HOSTS < <(gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone="$ZONE" \
  --format=json | python3 -c 'import json, sys
print("\n".join(e["ipAddress"] for e in json.load(sys.stdin)["networkEndpoints"]))')
[ "${#HOSTS[@]}" -ge 1 ] || { echo "tpu_vm.sh: no hosts found for $TPU_NAME" >&2; exit 1; }
echo "tpu_vm.sh: $TPU_NAME has ${#HOSTS[@]} host(s)."

INSTALL="set -e
  test -d realm_tf || git clone $REPO realm_tf
  cd realm_tf && make install && .venv/bin/pip install -q -e '.[gcp]'
  .venv/bin/pip uninstall -q -y tensorflow && .venv/bin/pip install -q tensorflow-tpu==2.20.0"
ssh_tpu all "$INSTALL"

TRAIN="--work_dir=$BUCKET --retriever_init=$BUCKET/bert_base_uncased \
  --reader_init=$BUCKET/bert_base_uncased"

if [ "${#HOSTS[@]}" -eq 1 ]; then
  ssh_tpu 0 "cd realm_tf && .venv/bin/python -m realm_tf.launch.pretrain \
    --flagfile=launch/configs/paper_tpu.flags --tpu=local $TRAIN"
  exit 0
fi

WORKERS=$(printf "%s:$WORKER_PORT," "${HOSTS[@]}")
WORKERS="${WORKERS%,}"
# The dispatcher on worker 0 (it lists every worker: static sharding), a worker on every host.
ssh_tpu 0 "cd realm_tf && nohup .venv/bin/python -m realm_tf.launch.data_service_worker \
  --dispatcher_port=$DISPATCHER_PORT --worker_addresses=$WORKERS > dispatcher.log 2>&1 &"
for i in "${!HOSTS[@]}"; do
  ssh_tpu "$i" "cd realm_tf && nohup .venv/bin/python -m realm_tf.launch.data_service_worker \
    --dispatcher_address=${HOSTS[0]}:$DISPATCHER_PORT --worker_port=$WORKER_PORT \
    --worker_host=${HOSTS[$i]} > data_service_worker.log 2>&1 &"
done
# One client, on worker 0, with the environment Cloud TPU's TensorFlow-on-pods guide gives it.
ssh_tpu 0 "cd realm_tf && TPU_NAME=$TPU_NAME TPU_LOAD_LIBRARY=0 \
  .venv/bin/python -m realm_tf.launch.pretrain --flagfile=launch/configs/paper_tpu.flags \
  --tpu=$TPU_NAME $TRAIN \
  --data_service=grpc://${HOSTS[0]}:$DISPATCHER_PORT"
