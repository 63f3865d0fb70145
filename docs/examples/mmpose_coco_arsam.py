# mmpose's own top-down heatmap ResNet-50 COCO config (from the installed mmpose, `mmpose::`)
# switched to ARSAM; needs the COCO data under data/coco, as mmpose documents.
#
#   arsam-train docs/examples/mmpose_coco_arsam.py
_base_ = 'mmpose::body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py'

custom_imports = dict(imports=['arsam'], allow_failed_imports=False)  # registers the wrappers
optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05)
