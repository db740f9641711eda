#pragma once
// Elementwise ops: one include for the whole family.
//   elementwise_binary.hpp   add sub mul div pow maximum minimum neg, scalar forms, operators
//   elementwise_unary.hpp    exp log sqrt rsqrt tanh erf abs sigmoid relu square clamp where masked_fill
//   elementwise_compare.hpp  eq ne lt le gt ge isfinite all_finite (uint8 results, no autograd)
//   elementwise_inplace.hpp  add_ mul_ (optimizer updates, no autograd)
// All of them broadcast with NumPy rules and run on loom's thread pool through elementwise_map.hpp.
#include "loom/ops/elementwise_binary.hpp"
#include "loom/ops/elementwise_compare.hpp"
#include "loom/ops/elementwise_inplace.hpp"
#include "loom/ops/elementwise_unary.hpp"
