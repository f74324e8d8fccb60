// Big-endian field types for wire-format structs: byte arrays, so structs built from
// them have no padding and no alignment needs (sizes are static_assert'ed per layer).
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_BE_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_BE_H_

#include <cstdint>

namespace iser::softiwarp {

struct Be16 {
  uint8_t b[2];
  uint16_t get() const { return static_cast<uint16_t>(b[0] << 8 | b[1]); }
  void set(uint16_t v) {
    b[0] = static_cast<uint8_t>(v >> 8);
    b[1] = static_cast<uint8_t>(v);
  }
};

struct Be32 {
  uint8_t b[4];
  uint32_t get() const {
    return uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
  }
  void set(uint32_t v) {
    for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
  }
};

struct Be64 {
  uint8_t b[8];
  uint64_t get() const {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | b[i];
    return v;
  }
  void set(uint64_t v) {
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
  }
};

static_assert(sizeof(Be16) == 2 && sizeof(Be32) == 4 && sizeof(Be64) == 8);

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_BE_H_
