// CRC32c (Castagnoli) as used by MPA (RFC 5044 sec 4.4) and iSCSI digests, via ISA-L.
//
// ISA-L's crc32_iscsi(buf, len, init) is the raw reflected CRC register update: the
// standard CRC-32C is ~crc32_iscsi(buf, len, 0xFFFFFFFF) (check value for "123456789"
// is 0xE3069283). MPA sends the 32-bit value least-significant byte first.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_CRC32C_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <span>

namespace iser::softiwarp {

// Incremental CRC32c: Crc32c c; c.Update(a); c.Update(b); c.Value().
class Crc32c {
 public:
  void Reset() { state_ = 0xFFFFFFFFu; }
  void Update(const void* data, size_t len);
  void Update(std::span<const uint8_t> data) { Update(data.data(), data.size()); }
  uint32_t Value() const { return ~state_; }

 private:
  uint32_t state_ = 0xFFFFFFFFu;
};

uint32_t ComputeCrc32c(std::span<const uint8_t> data);

// The 4 CRC bytes as they appear on the wire (LSB first) and back.
inline void StoreCrcWire(uint32_t crc, uint8_t out[4]) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(crc >> (8 * i));
}
inline uint32_t LoadCrcWire(const uint8_t in[4]) {
  return uint32_t{in[0]} | uint32_t{in[1]} << 8 | uint32_t{in[2]} << 16 | uint32_t{in[3]} << 24;
}

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_CRC32C_H_
