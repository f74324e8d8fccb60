// CRC32C as iSCSI header/data digests use it (RFC 7143 sec 13.1, RFC 3720 appendix B.4),
// computed with ISA-L's hardware-accelerated crc32_iscsi.
#ifndef ISER_PDU_DIGEST_H_
#define ISER_PDU_DIGEST_H_

#include <cstdint>
#include <span>

namespace iser::pdu {

// Incremental: Crc32c c; c.Update(a); c.Update(b); c.Final().
class Crc32c {
 public:
  void Update(std::span<const uint8_t> bytes);
  uint32_t Final() const { return ~state_; }

 private:
  uint32_t state_ = 0xffffffff;
};

uint32_t ComputeCrc32c(std::span<const uint8_t> bytes);

// Digests travel least-significant byte first (RFC 3720 B.4: 32 zero bytes -> aa 36 91 8a).
inline void StoreDigest(uint32_t crc, uint8_t out[4]) {
  for (int i = 0; i < 4; ++i) out[i] = (crc >> (8 * i)) & 0xff;
}
inline uint32_t LoadDigest(const uint8_t in[4]) {
  return uint32_t{in[0]} | uint32_t{in[1]} << 8 | uint32_t{in[2]} << 16 | uint32_t{in[3]} << 24;
}

}  // namespace iser::pdu

#endif  // ISER_PDU_DIGEST_H_
