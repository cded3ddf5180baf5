#!/usr/bin/env bash
# Fetch the public external zoos and convert each into datasets/<name> (a weightspace zoo).
#
#   datasets/download_datasets.sh                 # everything below
#   datasets/download_datasets.sh 21_mnist_seed   # only the names given
#
# Sources: Zenodo record 5645138 (2021 datasets, dataset_<XX>_<name>.pt) and
# https://storage.googleapis.com/gresearch/smallcnnzoo-dataset/<name>.tar.xz
# (Small CNN Zoo, Unterthiner et al. 2020). Raw files stay in datasets/raw/ and
# are not fetched again. Downloads are verified (Zenodo: the record's MD5; Small
# CNN Zoo: the size and MD5 the server announces) and deleted when they do not
# match; each file's SHA-256 is kept next to it, checked before every reuse, and
# written into the zoo's provenance.
# `weightspace zoo download list` prints every name.
set -u
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then
    names=("$@")
else
    names=(11_tetris_seed 12_tetris_hyp 21_mnist_seed 22_mnist_hyp_1_fix_seed 23_mnist_hyp_1_rand_seed
           24_mnist_hyp_5_fix_seeds 25_mnist_hyp_5_rand_seeds 31_f-mnist_seed 01_ablations
           unterthiner_mnist unterthiner_fashion_mnist unterthiner_cifar10 unterthiner_svhn)
fi

failed=()
for name in "${names[@]}"; do
    if [ -d "datasets/$name" ]; then
        echo "datasets/$name exists; skipping (delete it or run: weightspace zoo download $name --overwrite)"
        continue
    fi
    echo "== $name"
    weightspace zoo download "$name" --root datasets || failed+=("$name")
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
