// A program outside loom's tree: it only sees the installed headers through find_package(loom).
// It checks one autograd identity so a broken install fails loudly: d/dx sum(x²) = 2x.
#include <cmath>
#include <cstdio>

#include "loom/loom.hpp"

int main() {
  loom::Generator gen(7);
  loom::Tensor<float> x = loom::randn<float>({3, 4}, gen);  // [3, 4]
  x.requires_grad_();
  loom::sum(loom::square(x)).backward();
  double worst = 0;
  for (int64_t i = 0; i < x.numel(); ++i)
    worst = std::fmax(worst, std::fabs(x.grad().data()[i] - 2.0 * x.data()[i]));
  std::printf("consumer: max |grad - 2x| = %.3g\n", worst);
  return worst < 1e-6 ? 0 : 1;
}
