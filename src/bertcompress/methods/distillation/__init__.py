"""Knowledge distillation: losses, layer mappings, students built from the teacher."""
