// MPA wire format (RFC 5044 sec 4 and 7, MPA v2 RFC 6581): request/reply frames,
// the v2 IRD/ORD word, and FPDU framing arithmetic. Markers are never used (M=0).
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_MPA_WIRE_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_MPA_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "iser/transport/rdma/softiwarp/be.h"

namespace iser::softiwarp {

inline constexpr char kMpaReqKey[] = "MPA ID Req Frame";
inline constexpr char kMpaRepKey[] = "MPA ID Rep Frame";
inline constexpr size_t kMpaKeySize = 16;

// Flags byte (offset 16).
inline constexpr uint8_t kMpaFlagMarkers = 0x80;
inline constexpr uint8_t kMpaFlagCrc = 0x40;
inline constexpr uint8_t kMpaFlagReject = 0x20;
inline constexpr uint8_t kMpaFlagEnhanced = 0x10;  // RFC 6581 "S"
inline constexpr uint8_t kMpaFlagReserved = 0x0F;

inline constexpr uint8_t kMpaRevision1 = 1;
inline constexpr uint8_t kMpaRevision2 = 2;

// RFC 5044: more than 512 bytes of private data -> close. Linux (siw, cma) limits the
// frame's private data to 256 bytes (RDMA_MAX_PRIVATE_DATA); we never send more.
inline constexpr size_t kMpaMaxPrivateData = 512;
inline constexpr size_t kMpaInteropPrivateData = 256;

struct MpaFrameHeader {
  uint8_t key[kMpaKeySize];
  uint8_t flags;
  uint8_t revision;
  Be16 pd_length;
};
static_assert(sizeof(MpaFrameHeader) == 20);

// RFC 6581 sec 5: first 4 bytes of private data when S=1 (and Rev >= 2).
struct MpaV2Word {
  Be16 ird;  // A | B | IRD(14)
  Be16 ord;  // C | D | ORD(14)
};
static_assert(sizeof(MpaV2Word) == 4);
inline constexpr uint16_t kMpaV2PeerToPeer = 0x8000;   // A, in ird
inline constexpr uint16_t kMpaV2RtrSend = 0x4000;      // B, in ird
inline constexpr uint16_t kMpaV2RtrWrite = 0x8000;     // C, in ord
inline constexpr uint16_t kMpaV2RtrRead = 0x4000;      // D, in ord
inline constexpr uint16_t kMpaV2IrdOrdMask = 0x3FFF;
inline constexpr uint16_t kMpaV2NoNegotiate = 0x3FFF;

// RTR message types as a small bit set.
enum RtrType : uint8_t { kRtrNone = 0, kRtrSend = 1, kRtrWrite = 2, kRtrRead = 4 };

// A decoded request or reply frame.
struct MpaFrame {
  bool reply = false;
  bool markers = false;
  bool crc = false;
  bool reject = false;
  uint8_t revision = kMpaRevision2;
  // Enhanced (v2) connection setup: the frame had S=1 and Rev >= 2, and the IRD/ORD
  // word is present (it is not part of private_data below).
  bool enhanced = false;
  uint16_t ird = 0;
  uint16_t ord = 0;
  bool peer_to_peer = false;
  uint8_t rtr = kRtrNone;  // RtrType bits
  std::vector<uint8_t> private_data;  // the ULP's share
};

// Encodes a complete frame (header + v2 word if enhanced + ULP private data).
// Fails if the private data exceeds `pd_limit` (counting the v2 word).
absl::StatusOr<std::vector<uint8_t>> EncodeMpaFrame(const MpaFrame& frame,
                                                    size_t pd_limit = kMpaInteropPrivateData);

// Validates the 20-byte header: key (request or reply as `expect_reply`), reserved
// bits, PD_Length <= 512. Returns PD_Length.
absl::StatusOr<uint16_t> DecodeMpaHeader(std::span<const uint8_t, sizeof(MpaFrameHeader)> hdr,
                                         bool expect_reply);

// Decodes a complete frame (header + PD_Length bytes).
absl::StatusOr<MpaFrame> DecodeMpaFrame(std::span<const uint8_t> frame, bool expect_reply);

// FPDU arithmetic (no markers): ULPDU_Length(2) | ULPDU | PAD | CRC(4).
inline constexpr uint32_t kMpaLengthSize = 2;
inline constexpr uint32_t kMpaCrcSize = 4;
inline constexpr uint32_t FpduPadLength(uint32_t ulpdu_len) {
  return (4 - ((ulpdu_len + kMpaLengthSize) & 3)) & 3;
}
inline constexpr uint32_t FpduLength(uint32_t ulpdu_len) {
  return kMpaLengthSize + ulpdu_len + FpduPadLength(ulpdu_len) + kMpaCrcSize;
}
// RFC 5044 sec 4.5 without markers: EMSS - (6 + EMSS mod 4), never below 128, and at
// most what the 16-bit ULPDU_Length can express (rounded down to keep FPDUs aligned).
uint32_t MulpduForEmss(uint32_t emss);

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_MPA_WIRE_H_
