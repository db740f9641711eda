#pragma once
// Finite-difference gradient checks as Catch2 assertions: on failure the message names the input and
// element whose analytic and numeric gradients disagree (autograd::gradcheck's report).
#include <catch2/catch.hpp>

#include <vector>

#include "loom/autograd/gradcheck.hpp"

namespace loom::test {

inline void require_gradcheck(const autograd::GradcheckFn& f, const std::vector<Tensor<double>>& inputs,
                              const autograd::GradcheckOptions& options = {}) {
  const autograd::GradcheckResult result = autograd::gradcheck(f, inputs, options);
  INFO(result.message);
  REQUIRE(result.ok);
}

}  // namespace loom::test
