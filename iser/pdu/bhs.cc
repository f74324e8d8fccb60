#include "iser/pdu/bhs.h"

#include "absl/strings/str_format.h"

namespace iser::pdu {

const char* OpcodeName(Opcode op) {
  switch (op) {
    case Opcode::kNopOut:
      return "NOP-Out";
    case Opcode::kScsiCommand:
      return "SCSI-Command";
    case Opcode::kTaskMgmtRequest:
      return "TMF-Request";
    case Opcode::kLoginRequest:
      return "Login-Request";
    case Opcode::kTextRequest:
      return "Text-Request";
    case Opcode::kDataOut:
      return "Data-Out";
    case Opcode::kLogoutRequest:
      return "Logout-Request";
    case Opcode::kSnackRequest:
      return "SNACK";
    case Opcode::kNopIn:
      return "NOP-In";
    case Opcode::kScsiResponse:
      return "SCSI-Response";
    case Opcode::kTaskMgmtResponse:
      return "TMF-Response";
    case Opcode::kLoginResponse:
      return "Login-Response";
    case Opcode::kTextResponse:
      return "Text-Response";
    case Opcode::kDataIn:
      return "Data-In";
    case Opcode::kLogoutResponse:
      return "Logout-Response";
    case Opcode::kR2t:
      return "R2T";
    case Opcode::kAsyncMessage:
      return "Async-Message";
    case Opcode::kReject:
      return "Reject";
  }
  return "Unknown";
}

uint64_t DecodeLun(uint64_t lun_field) {
  uint8_t method = lun_field >> 62;
  if (method == 0) {  // peripheral device addressing: bus 0, target/LUN in byte 1
    if (((lun_field >> 48) & 0x3f00) != 0) return UINT64_MAX;         // bus identifier != 0
    if ((lun_field & 0x0000ffffffffffffULL) != 0) return UINT64_MAX;  // second level
    return (lun_field >> 48) & 0xff;
  }
  if (method == 1) {  // flat space addressing
    if ((lun_field & 0x0000ffffffffffffULL) != 0) return UINT64_MAX;
    return (lun_field >> 48) & 0x3fff;
  }
  return UINT64_MAX;
}

uint64_t EncodeLun(uint64_t lun) {
  if (lun < 256) return lun << 48;
  return (uint64_t{0x4000} | (lun & 0x3fff)) << 48;
}

std::string DescribeBhs(const Bhs& bhs) {
  return absl::StrFormat("%s flags=0x%02x itt=0x%08x dsl=%u sn=%u", OpcodeName(bhs.opcode()),
                         bhs.flags(), bhs.itt(), bhs.data_segment_length(), bhs.u32(24));
}

}  // namespace iser::pdu
