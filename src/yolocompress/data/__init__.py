"""Data stage: dataset yaml, label checks and cache, augmentations, the YOLO Dataset/DataLoader, demo data."""
from .dataset import DataConfig, YoloDataset, create_dataloader, load_data_config
from .demo import make_demo_dataset
from .labels import check_item, img2label_path, load_labels

__all__ = ["DataConfig", "YoloDataset", "check_item", "create_dataloader", "img2label_path", "load_data_config",
           "load_labels", "make_demo_dataset"]
