#pragma once
// Packed shards (being written).
#include "loom/data/dataset.hpp"
