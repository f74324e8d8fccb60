#include "iser/pdu/digest.h"

#include <isa-l/crc.h>

namespace iser::pdu {

void Crc32c::Update(std::span<const uint8_t> bytes) {
  if (!bytes.empty())
    state_ = crc32_iscsi(const_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size()),
                         state_);
}

uint32_t ComputeCrc32c(std::span<const uint8_t> bytes) {
  Crc32c c;
  c.Update(bytes);
  return c.Final();
}

}  // namespace iser::pdu
