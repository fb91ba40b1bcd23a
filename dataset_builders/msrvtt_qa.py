"""MSRVTT-QA (held-out, video QA), from the official release; the format and the records are
MSVD-QA's (see msvd_qa.py), only the videos differ.

Official release: the QA files of Xu et al. 2017 (https://github.com/xudejing/video-question-answering,
data at https://data.mendeley.com/datasets/bvxhs33bw6) and the MSR-VTT videos
(http://ms-multimedia-challenge.com/2016/dataset), in one folder:

    train_qa.json  val_qa.json  test_qa.json
    TrainValVideo/video0.mp4 ... video7009.mp4     (train: video0-6512, val: video6513-7009)
    TestVideo/video7010.mp4 ... video9999.mp4      (test)

A QA file: [{"answer": str, "category_id": int, "id": int, "question": str, "video_id": int
(the N of video<N>.mp4)}].
"""

import os

from .msvd_qa import MSVDQA

_QA_URL = "https://data.mendeley.com/datasets/bvxhs33bw6 (MSRVTT-QA)"
_VIDEO_URL = "http://ms-multimedia-challenge.com/2016/dataset"
VIDEO_DIRS = {"train": "TrainValVideo", "validation": "TrainValVideo", "test": "TestVideo"}

_CITATION = """@inproceedings{xu2017video,
  title={Video Question Answering via Gradually Refined Attention over Appearance and Motion},
  author={Xu, Dejing and Zhao, Zhou and Xiao, Jun and Wu, Fei and Zhang, Hanwang and He, Xiangnan
  and Zhuang, Yueting}, booktitle={ACM Multimedia}, year={2017}}
@inproceedings{xu2016msr,
  title={MSR-VTT: A Large Video Description Dataset for Bridging Video and Language},
  author={Xu, Jun and Mei, Tao and Yao, Ting and Rui, Yong}, booktitle={CVPR}, year={2016}}"""


class MSRVTTQA(MSVDQA):
    """MSRVTT-QA questions on MSR-VTT web videos, ranked over the train answer vocabulary."""

    DATASET_NAME = "msrvtt_qa"
    HOMEPAGE = "https://github.com/xudejing/video-question-answering"
    CITATION = _CITATION
    QA_URL = _QA_URL

    def video_files(self, split: str) -> dict:
        return {VIDEO_DIRS[split]: _VIDEO_URL}

    def video_index(self, split: str):
        """The split's video folder."""
        return self.path(VIDEO_DIRS[split])

    def video_path(self, video_id: int, folder) -> str:
        return os.path.join(folder, f"video{video_id}.mp4")


BUILDERS = {cls.DATASET_NAME: cls for cls in (MSRVTTQA,)}
