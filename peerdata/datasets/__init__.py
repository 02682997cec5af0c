"""Datasets: MNIST-format loaders, generated pattern families, and disjoint seeded splits."""

from peerdata.datasets.images import IMAGE_SIDE, LabelledImages, checked
from peerdata.datasets.loaders import (
    DATA_DIR_ENV,
    DatasetFiles,
    DatasetSplits,
    find_dataset_files,
    list_dataset_files,
    load_dataset,
    read_idx,
    read_idx_pair,
    read_npz,
    resolve_data_dir,
)
from peerdata.datasets.splits import (
    DomainData,
    allocate_disjoint,
    balanced_subset,
    prepare_domain,
    stratified_split,
)

__all__ = [
    "DATA_DIR_ENV",
    "IMAGE_SIDE",
    "DatasetFiles",
    "DatasetSplits",
    "DomainData",
    "LabelledImages",
    "allocate_disjoint",
    "balanced_subset",
    "checked",
    "find_dataset_files",
    "list_dataset_files",
    "load_dataset",
    "prepare_domain",
    "read_idx",
    "read_idx_pair",
    "read_npz",
    "resolve_data_dir",
    "stratified_split",
]
