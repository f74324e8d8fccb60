#include "iser/transport/rdma/softiwarp/crc32c.h"

#include <isa-l/crc.h>

#include <climits>

namespace iser::softiwarp {

void Crc32c::Update(const void* data, size_t len) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (len > 0) {
    int chunk = len > INT_MAX ? INT_MAX : static_cast<int>(len);
    state_ = crc32_iscsi(const_cast<unsigned char*>(p), chunk, state_);
    p += chunk;
    len -= chunk;
  }
}

uint32_t ComputeCrc32c(std::span<const uint8_t> data) {
  Crc32c c;
  c.Update(data);
  return c.Value();
}

}  // namespace iser::softiwarp
