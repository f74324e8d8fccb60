#include "iser/scsi/sense.h"

#include "iser/scsi/cdb.h"
#include "iser/scsi/scsi_device.h"

namespace iser::scsi {

namespace {

void FillSks(uint8_t* p, const FieldPointer& f) {
  p[0] = 0x80 | (f.in_cdb ? 0x40 : 0x00);
  if (f.bit) p[0] |= 0x08 | (*f.bit & 0x07);
  Put16(p + 1, f.byte);
}

}  // namespace

std::vector<uint8_t> BuildSense(SenseCode code, bool descriptor_format, const SenseDetail& detail) {
  if (!descriptor_format) {
    std::vector<uint8_t> s(18, 0);
    s[0] = 0x70;
    s[2] = code.key & 0x0f;
    s[7] = 10;  // additional sense length
    s[12] = code.asc;
    s[13] = code.ascq;
    if (detail.information) {
      s[0] |= 0x80;  // VALID
      Put32(&s[3], uint32_t(*detail.information));
    }
    if (detail.field) FillSks(&s[15], *detail.field);
    return s;
  }
  std::vector<uint8_t> s(8, 0);
  s[0] = 0x72;
  s[1] = code.key & 0x0f;
  s[2] = code.asc;
  s[3] = code.ascq;
  if (detail.information) {
    // Information descriptor (type 0x00), SPC-4 4.5.2.2.
    uint8_t d[12] = {0x00, 0x0a, 0x80, 0};
    Put64(d + 4, *detail.information);
    s.insert(s.end(), d, d + sizeof(d));
  }
  if (detail.field) {
    // Sense key specific descriptor (type 0x02).
    uint8_t d[8] = {0x02, 0x06, 0, 0};
    FillSks(d + 4, *detail.field);
    s.insert(s.end(), d, d + sizeof(d));
  }
  s[7] = uint8_t(s.size() - 8);
  return s;
}

std::optional<SenseCode> ParseSense(const std::vector<uint8_t>& s) {
  if (s.empty()) return std::nullopt;
  uint8_t rc = s[0] & 0x7f;
  if ((rc == 0x70 || rc == 0x71) && s.size() >= 14) {
    return SenseCode{uint8_t(s[2] & 0x0f), s[12], s[13]};
  }
  if ((rc == 0x72 || rc == 0x73) && s.size() >= 4) {
    return SenseCode{uint8_t(s[1] & 0x0f), s[2], s[3]};
  }
  return std::nullopt;
}

std::vector<uint8_t> FixedSense(uint8_t key, uint8_t asc, uint8_t ascq) {
  return BuildSense(SenseCode{key, asc, ascq}, false);
}

}  // namespace iser::scsi
