#pragma once
// The multi-modal mask module: strategies, spec parsing, plans, token ops and the masked loss.
#include "loom/mask/mask_plan.hpp"
#include "loom/mask/masked_loss.hpp"
#include "loom/mask/spec.hpp"
#include "loom/mask/strategy.hpp"
#include "loom/mask/tokens.hpp"
