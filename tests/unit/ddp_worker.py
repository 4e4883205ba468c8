"""Run by test_distributed under torch.distributed.run: the same short fine-tune in every process.
Arguments: output file, global batch size."""
import sys

import torch
from accelerate import PartialState

from bertcompress.training.loop import TrainConfig, train
from tests.conftest import tiny_model
from tests.unit.test_training import learnable_data

model = tiny_model()
initial = {key: value.clone() for key, value in model.state_dict().items()}
train(model, learnable_data(), TrainConfig(max_steps=8, batch_size=int(sys.argv[2]), learning_rate=1e-3))
state = PartialState(cpu=True)
if state.is_main_process:
    torch.save({"world": state.num_processes, "initial": initial, "weights": model.state_dict()}, sys.argv[1])
