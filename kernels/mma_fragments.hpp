#pragma once
// Which matrix elements each lane of a warp holds in the tensor-core instruction
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (PTX ISA, "Matrix fragments for mma.m16n8k16"):
//   A 16×16 (row-major): 4 registers of 2 bf16;  B 16×8 (k × n): 2 registers of 2 bf16;
//   C/D 16×8 fp32: 4 floats.  g = lane / 4 ("group"), t = lane % 4 ("thread in group").
// The bf16 attention kernels (flash_attention_bf16.cu) compute every shared-memory address from
// these maps, and the CPU tests emulate a warp's mma through them, so an addressing mistake shows up
// without a GPU. Element pairs (x, x+1) of a register are adjacent columns of A / adjacent k of B.
#include "loom/core/host_device.hpp"

namespace loom::kernels::mma {

LOOM_HOST_DEVICE constexpr int group(int lane) { return lane >> 2; }
LOOM_HOST_DEVICE constexpr int thread_in_group(int lane) { return lane & 3; }

// A: register r (0..3) holds elements (row, col) and (row, col + 1).
LOOM_HOST_DEVICE constexpr int a_row(int lane, int r) { return group(lane) + ((r & 1) ? 8 : 0); }
LOOM_HOST_DEVICE constexpr int a_col(int lane, int r) { return thread_in_group(lane) * 2 + ((r & 2) ? 8 : 0); }

// B: register r (0..1) holds elements (k, n) and (k + 1, n).
LOOM_HOST_DEVICE constexpr int b_k(int lane, int r) { return thread_in_group(lane) * 2 + (r ? 8 : 0); }
LOOM_HOST_DEVICE constexpr int b_n(int lane) { return group(lane); }

// C: float i (0..3) is element (row, col).
LOOM_HOST_DEVICE constexpr int c_row(int lane, int i) { return group(lane) + (i >= 2 ? 8 : 0); }
LOOM_HOST_DEVICE constexpr int c_col(int lane, int i) { return thread_in_group(lane) * 2 + (i & 1); }

// The accumulator tiles of columns [16j, 16j + 8) and [16j + 8, 16j + 16) of a product, converted
// to bf16 pairs, are exactly the A fragment of k-block j of the next product (P·V after Q·Kᵀ):
// A register r takes C tile (r >> 1) of the pair, floats ((r & 1) · 2, +1).
LOOM_HOST_DEVICE constexpr int a_from_c_tile(int r) { return r >> 1; }
LOOM_HOST_DEVICE constexpr int a_from_c_first(int r) { return (r & 1) * 2; }

// ldmatrix.x4 loads four 8×8 bf16 matrices; lane l supplies the address of row l % 8 of matrix
// l / 8, and receives from each matrix m, in register m, the pair (row l / 4, columns 2(l % 4), +1) —
// or with .trans the pair (rows 2(l % 4), +1; column l / 4). Where each lane points:
//   A block and B from a row-major [k][n] tile (.trans): matrix m at row offset 8(m & 1), column 8(m >> 1),
//     giving A registers 0..3, or B registers {0, 1} of n-tile n0 and {2, 3} of n-tile n0 + 8;
//   B from a Bᵀ row-major [n][k] tile: matrix m at row (n) offset 8(m >> 1), column (k) 8(m & 1),
//     giving B registers {0, 1} of n-tile n0 and {2, 3} of n-tile n0 + 8.
LOOM_HOST_DEVICE constexpr int ldm_row(int lane) { return (lane & 7) + 8 * ((lane >> 3) & 1); }
LOOM_HOST_DEVICE constexpr int ldm_col(int lane) { return 8 * (lane >> 4); }
LOOM_HOST_DEVICE constexpr int ldm_bt_row(int lane) { return (lane & 7) + 8 * (lane >> 4); }
LOOM_HOST_DEVICE constexpr int ldm_bt_col(int lane) { return 8 * ((lane >> 3) & 1); }

}  // namespace loom::kernels::mma
