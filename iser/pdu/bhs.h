// The iSCSI Basic Header Segment (RFC 7143 sec 11.2): 48 bytes, big-endian fields.
//
// Bhs is a value type holding the raw bytes, with accessors named after the RFC's
// fields. Opcode-specific fields share offsets, so one class with field constants
// serves every PDU type (the offsets are listed per opcode below).
#ifndef ISER_PDU_BHS_H_
#define ISER_PDU_BHS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>

namespace iser::pdu {

inline constexpr size_t kBhsSize = 48;
inline constexpr uint32_t kReservedTag = 0xffffffff;

enum class Opcode : uint8_t {
  // Initiator opcodes.
  kNopOut = 0x00,
  kScsiCommand = 0x01,
  kTaskMgmtRequest = 0x02,
  kLoginRequest = 0x03,
  kTextRequest = 0x04,
  kDataOut = 0x05,
  kLogoutRequest = 0x06,
  kSnackRequest = 0x10,
  // Target opcodes.
  kNopIn = 0x20,
  kScsiResponse = 0x21,
  kTaskMgmtResponse = 0x22,
  kLoginResponse = 0x23,
  kTextResponse = 0x24,
  kDataIn = 0x25,
  kLogoutResponse = 0x26,
  kR2t = 0x31,
  kAsyncMessage = 0x32,
  kReject = 0x3f,
};

const char* OpcodeName(Opcode op);

// Byte 1 flag bits.
inline constexpr uint8_t kFlagFinal = 0x80;
// SCSI Command
inline constexpr uint8_t kCmdFlagRead = 0x40;
inline constexpr uint8_t kCmdFlagWrite = 0x20;
inline constexpr uint8_t kCmdAttrMask = 0x07;
// SCSI Response / Data-In residual flags
inline constexpr uint8_t kRspFlagBidiOverflow = 0x10;
inline constexpr uint8_t kRspFlagBidiUnderflow = 0x08;
inline constexpr uint8_t kRspFlagOverflow = 0x04;
inline constexpr uint8_t kRspFlagUnderflow = 0x02;
inline constexpr uint8_t kDataInFlagAck = 0x40;
inline constexpr uint8_t kDataInFlagStatus = 0x01;
// Login / Text
inline constexpr uint8_t kLoginFlagTransit = 0x80;
inline constexpr uint8_t kFlagContinue = 0x40;

// Reject reasons (RFC 7143 sec 11.17.1).
enum class RejectReason : uint8_t {
  kDataDigestError = 0x02,
  kSnackReject = 0x03,
  kProtocolError = 0x04,
  kCommandNotSupported = 0x05,
  kImmediateCommandReject = 0x06,
  kTaskInProgress = 0x07,
  kInvalidDataAck = 0x08,
  kInvalidPduField = 0x09,
  kLongOpReject = 0x0a,
  kDeprecated = 0x0b,
  kWaitingForLogout = 0x0c,
};

// Task management functions and responses (RFC 7143 sec 11.5, 11.6).
enum class TmfFunction : uint8_t {
  kAbortTask = 1,
  kAbortTaskSet = 2,
  kClearAca = 3,
  kClearTaskSet = 4,
  kLogicalUnitReset = 5,
  kTargetWarmReset = 6,
  kTargetColdReset = 7,
  kTaskReassign = 8,
};
enum class TmfResponse : uint8_t {
  kComplete = 0,
  kTaskDoesNotExist = 1,
  kLunDoesNotExist = 2,
  kTaskStillAllegiant = 3,
  kReassignmentNotSupported = 4,
  kNotSupported = 5,
  kAuthorizationFailed = 6,
  kRejected = 255,
};

// Field offsets shared by several opcodes.
namespace field {
inline constexpr size_t kLun = 8;  // 8 bytes
inline constexpr size_t kItt = 16;
inline constexpr size_t kTtt = 20;  // also RefTaskTag (TMF), EDTL (SCSI Command)
inline constexpr size_t kEdtl = 20;
inline constexpr size_t kRefTaskTag = 20;
inline constexpr size_t kCmdSn = 24;          // requests
inline constexpr size_t kStatSn = 24;         // responses
inline constexpr size_t kExpStatSn = 28;      // requests
inline constexpr size_t kExpCmdSn = 28;       // responses
inline constexpr size_t kMaxCmdSn = 32;       // responses
inline constexpr size_t kRefCmdSn = 32;       // TMF request
inline constexpr size_t kDataSn = 36;         // Data-In/Out, R2TSN in R2T, ExpDataSN in SCSI Rsp
inline constexpr size_t kBufferOffset = 40;   // Data-In/Out, R2T
inline constexpr size_t kResidual = 44;       // SCSI Response, Data-In
inline constexpr size_t kBidiResidual = 40;   // SCSI Response
inline constexpr size_t kDesiredLength = 44;  // R2T
inline constexpr size_t kCdb = 32;            // SCSI Command, 16 bytes
inline constexpr size_t kIsid = 8;            // Login, 6 bytes
inline constexpr size_t kTsih = 14;           // Login, 2 bytes
inline constexpr size_t kCid = 20;            // Login request, Logout request, 2 bytes
inline constexpr size_t kLoginStatusClass = 36;
inline constexpr size_t kLoginStatusDetail = 37;
inline constexpr size_t kTime2Wait = 40;  // Logout response, 2 bytes
inline constexpr size_t kTime2Retain = 42;
}  // namespace field

class Bhs {
 public:
  Bhs() { bytes_.fill(0); }
  explicit Bhs(std::span<const uint8_t, kBhsSize> raw) {
    std::memcpy(bytes_.data(), raw.data(), kBhsSize);
  }
  // A zeroed BHS with the opcode set (and the F bit, which most target PDUs carry).
  static Bhs Make(Opcode op, uint8_t flags = kFlagFinal) {
    Bhs b;
    b.bytes_[0] = static_cast<uint8_t>(op);
    b.bytes_[1] = flags;
    return b;
  }

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  std::span<const uint8_t, kBhsSize> span() const {
    return std::span<const uint8_t, kBhsSize>(bytes_);
  }

  Opcode opcode() const { return static_cast<Opcode>(bytes_[0] & 0x3f); }
  bool immediate() const { return bytes_[0] & 0x40; }
  void set_immediate(bool v) { bytes_[0] = (bytes_[0] & ~0x40) | (v ? 0x40 : 0); }
  uint8_t flags() const { return bytes_[1]; }
  void set_flags(uint8_t f) { bytes_[1] = f; }
  bool final_bit() const { return bytes_[1] & kFlagFinal; }
  uint8_t byte(size_t off) const { return bytes_[off]; }
  void set_byte(size_t off, uint8_t v) { bytes_[off] = v; }

  // Length of the additional header segments in bytes (the field counts 4-byte words).
  size_t ahs_length() const { return size_t{bytes_[4]} * 4; }
  void set_ahs_words(uint8_t words) { bytes_[4] = words; }
  uint32_t data_segment_length() const {
    return (uint32_t{bytes_[5]} << 16) | (uint32_t{bytes_[6]} << 8) | bytes_[7];
  }
  void set_data_segment_length(uint32_t len) {
    bytes_[5] = (len >> 16) & 0xff;
    bytes_[6] = (len >> 8) & 0xff;
    bytes_[7] = len & 0xff;
  }

  uint16_t u16(size_t off) const { return uint16_t(bytes_[off] << 8 | bytes_[off + 1]); }
  void set_u16(size_t off, uint16_t v) {
    bytes_[off] = v >> 8;
    bytes_[off + 1] = v & 0xff;
  }
  uint32_t u32(size_t off) const {
    return (uint32_t{bytes_[off]} << 24) | (uint32_t{bytes_[off + 1]} << 16) |
           (uint32_t{bytes_[off + 2]} << 8) | bytes_[off + 3];
  }
  void set_u32(size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes_[off + i] = (v >> (24 - 8 * i)) & 0xff;
  }
  uint64_t u64(size_t off) const { return uint64_t{u32(off)} << 32 | u32(off + 4); }
  void set_u64(size_t off, uint64_t v) {
    set_u32(off, v >> 32);
    set_u32(off + 4, v & 0xffffffff);
  }
  uint64_t u48(size_t off) const { return uint64_t{u16(off)} << 32 | u32(off + 2); }
  void set_u48(size_t off, uint64_t v) {
    set_u16(off, (v >> 32) & 0xffff);
    set_u32(off + 2, v & 0xffffffff);
  }

  // Common fields.
  uint64_t lun_field() const { return u64(field::kLun); }
  void set_lun_field(uint64_t v) { set_u64(field::kLun, v); }
  uint32_t itt() const { return u32(field::kItt); }
  void set_itt(uint32_t v) { set_u32(field::kItt, v); }
  uint32_t ttt() const { return u32(field::kTtt); }
  void set_ttt(uint32_t v) { set_u32(field::kTtt, v); }
  uint32_t cmd_sn() const { return u32(field::kCmdSn); }
  uint32_t exp_stat_sn() const { return u32(field::kExpStatSn); }
  void set_stat_sn(uint32_t v) { set_u32(field::kStatSn, v); }
  void set_exp_cmd_sn(uint32_t v) { set_u32(field::kExpCmdSn, v); }
  void set_max_cmd_sn(uint32_t v) { set_u32(field::kMaxCmdSn, v); }
  std::span<const uint8_t> cdb() const { return {bytes_.data() + field::kCdb, 16}; }

 private:
  std::array<uint8_t, kBhsSize> bytes_;
};

// LUN field <-> LUN number (SAM-5 single level: peripheral (0-255) and flat (0-16383)
// addressing). Returns UINT64_MAX for a format we do not decode.
uint64_t DecodeLun(uint64_t lun_field);
uint64_t EncodeLun(uint64_t lun);

// Serial number arithmetic (RFC 1982 with SERIAL_BITS = 32), used for CmdSN windows.
inline bool SnLess(uint32_t a, uint32_t b) { return a != b && static_cast<int32_t>(a - b) < 0; }
inline bool SnLessEq(uint32_t a, uint32_t b) { return a == b || SnLess(a, b); }

// Pads a data segment length to the 4-byte boundary.
inline constexpr uint32_t PaddedLength(uint32_t len) { return (len + 3) & ~3u; }

std::string DescribeBhs(const Bhs& bhs);  // one line for logs

}  // namespace iser::pdu

#endif  // ISER_PDU_BHS_H_
