#include "iser/transport/iser/iser_header.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace iser::iser_transport {
namespace {

void Put(uint8_t* p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

uint64_t Get(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = v << 8 | p[i];
  return v;
}

}  // namespace

void EncodeIserHeader(const IserHeader& h, std::span<uint8_t> out) {
  IserHeaderWire w;
  std::memset(&w, 0, sizeof(w));
  w.flags = static_cast<uint8_t>(h.opcode);
  switch (h.opcode) {
    case IserOpcode::kControl:
      if (h.write_valid) {
        w.flags |= kIserFlagWsv;
        Put(w.write_stag, h.write_stag, 4);
        Put(w.write_base, h.write_base, 8);
      }
      if (h.read_valid) {
        w.flags |= kIserFlagRsv;
        Put(w.read_stag, h.read_stag, 4);
        Put(w.read_base, h.read_base, 8);
      }
      break;
    case IserOpcode::kHello:
    case IserOpcode::kHelloReply:
      if (h.opcode == IserOpcode::kHelloReply && h.reject) w.flags |= kIserFlagRej;
      w.version = static_cast<uint8_t>((h.max_version & 0x0F) << 4 | (h.min_or_cur_version & 0x0F));
      Put(w.ird_ord, h.ird_or_ord, 2);
      break;
  }
  std::memcpy(out.data(), &w, sizeof(w));
}

absl::StatusOr<IserHeader> DecodeIserHeader(std::span<const uint8_t> in) {
  if (in.size() < kIserHeaderSize)
    return absl::InvalidArgumentError(
        absl::StrFormat("iSER message of %u bytes is shorter than the iSER header",
                        static_cast<unsigned>(in.size())));
  IserHeaderWire w;
  std::memcpy(&w, in.data(), sizeof(w));
  IserHeader h;
  uint8_t op = w.flags & kIserOpcodeMask;
  switch (op) {
    case static_cast<uint8_t>(IserOpcode::kControl):
      h.opcode = IserOpcode::kControl;
      h.write_valid = w.flags & kIserFlagWsv;
      h.read_valid = w.flags & kIserFlagRsv;
      // Fields whose valid bit is clear are ignored (RFC 7145 sec 9.2).
      if (h.write_valid) {
        h.write_stag = static_cast<uint32_t>(Get(w.write_stag, 4));
        h.write_base = Get(w.write_base, 8);
      }
      if (h.read_valid) {
        h.read_stag = static_cast<uint32_t>(Get(w.read_stag, 4));
        h.read_base = Get(w.read_base, 8);
      }
      return h;
    case static_cast<uint8_t>(IserOpcode::kHello):
    case static_cast<uint8_t>(IserOpcode::kHelloReply):
      if (in.size() != kIserHeaderSize)
        return absl::InvalidArgumentError("iSER Hello/HelloReply must be exactly 28 bytes");
      h.opcode = static_cast<IserOpcode>(op);
      h.reject = h.opcode == IserOpcode::kHelloReply && (w.flags & kIserFlagRej);
      h.max_version = w.version >> 4;
      h.min_or_cur_version = w.version & 0x0F;
      h.ird_or_ord = static_cast<uint16_t>(Get(w.ird_ord, 2));
      return h;
    default:
      return absl::InvalidArgumentError(
          absl::StrFormat("unknown iSER opcode 0x%02x", static_cast<int>(op)));
  }
}

}  // namespace iser::iser_transport
