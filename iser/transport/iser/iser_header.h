// The iSER header (RFC 7145 sec 9): 28 bytes at the start of every RDMA Send of an
// iSER connection. For control PDUs the iSCSI BHS follows; Hello and HelloReply are
// the header alone. Layout matches Linux's `struct iser_ctrl` (include/scsi/iser.h).
//
//   off 0  flags: opcode in the high nibble (0x10 control, 0x20 Hello, 0x30 HelloReply);
//          control: WSV 0x08, RSV 0x04; HelloReply: REJ 0x01
//   off 1  Hello: MaxVer<<4 | MinVer; HelloReply: MaxVer<<4 | CurVer
//   off 2  Hello: iSER-IRD; HelloReply: iSER-ORD (16 bits)
//   off 4  Write STag, off 8 Write Base Offset, off 16 Read STag, off 20 Read Base Offset
#ifndef ISER_TRANSPORT_ISER_ISER_HEADER_H_
#define ISER_TRANSPORT_ISER_ISER_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/statusor.h"

namespace iser::iser_transport {

inline constexpr size_t kIserHeaderSize = 28;

// Big-endian on the wire; this struct is only the byte image (no host-order fields).
struct IserHeaderWire {
  uint8_t flags;
  uint8_t version;
  uint8_t ird_ord[2];
  uint8_t write_stag[4];
  uint8_t write_base[8];
  uint8_t read_stag[4];
  uint8_t read_base[8];
};
static_assert(sizeof(IserHeaderWire) == kIserHeaderSize);
static_assert(offsetof(IserHeaderWire, write_stag) == 4);
static_assert(offsetof(IserHeaderWire, write_base) == 8);
static_assert(offsetof(IserHeaderWire, read_stag) == 16);
static_assert(offsetof(IserHeaderWire, read_base) == 20);

enum class IserOpcode : uint8_t { kControl = 0x10, kHello = 0x20, kHelloReply = 0x30 };

inline constexpr uint8_t kIserOpcodeMask = 0xF0;
inline constexpr uint8_t kIserFlagWsv = 0x08;
inline constexpr uint8_t kIserFlagRsv = 0x04;
inline constexpr uint8_t kIserFlagRej = 0x01;
// RFC 7145 sec 9.3 says version 10; RFC 5046 and Appendix B use 1. We send 10 and
// accept either.
inline constexpr uint8_t kIserVersion = 10;

// iSER CM private data (Linux `struct iser_cm_hdr`), in the MPA private data.
inline constexpr size_t kIserCmHdrSize = 4;
inline constexpr uint8_t kIserCmZbvaNotSupported = 0x80;
inline constexpr uint8_t kIserCmSendWithInvNotSupported = 0x40;

struct IserHeader {
  IserOpcode opcode = IserOpcode::kControl;
  // Control.
  bool write_valid = false;  // WSV
  bool read_valid = false;   // RSV
  uint32_t write_stag = 0;
  uint64_t write_base = 0;
  uint32_t read_stag = 0;
  uint64_t read_base = 0;
  // Hello / HelloReply.
  uint8_t max_version = kIserVersion;
  uint8_t min_or_cur_version = kIserVersion;  // Hello: MinVer; HelloReply: CurVer
  uint16_t ird_or_ord = 0;                    // Hello: iSER-IRD; HelloReply: iSER-ORD
  bool reject = false;                        // HelloReply REJ

  static IserHeader Control() { return IserHeader{}; }
};

// Writes the 28-byte header into `out` (at least kIserHeaderSize bytes). Fields whose
// valid bit is clear are written as zero.
void EncodeIserHeader(const IserHeader& h, std::span<uint8_t> out);

// Parses the first 28 bytes of a received Send. Errors: too short, unknown opcode,
// Hello/HelloReply with trailing bytes (`in` is the whole Send).
absl::StatusOr<IserHeader> DecodeIserHeader(std::span<const uint8_t> in);

}  // namespace iser::iser_transport

#endif  // ISER_TRANSPORT_ISER_ISER_HEADER_H_
