// MODE SENSE(6/10) and MODE SELECT(6/10) (SPC-4 6.11-6.14) over the pages this device
// has: read-write error recovery 0x01, caching 0x08, control 0x0A and informational
// exceptions 0x1C. Saved values are not implemented (PS = 0).
#include <cstring>
#include <vector>

#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"

namespace iser::scsi {

namespace {

enum class Pc : uint8_t { kCurrent = 0, kChangeable = 1, kDefault = 2, kSaved = 3 };

constexpr uint8_t kPages[] = {0x01, 0x08, 0x0a, 0x1c};

ModeParams DefaultParams(const LogicalUnit& lu) {
  ModeParams m;
  m.wce = lu.config().write_cache_enabled;
  return m;
}

// Renders one page (code, length byte, body) from `m`, or its changeable mask.
std::vector<uint8_t> RenderPage(uint8_t code, const ModeParams& m, bool changeable) {
  std::vector<uint8_t> p;
  switch (code) {
    case 0x01:  // read-write error recovery: nothing changeable
      p.assign(12, 0);
      break;
    case 0x08:  // caching
      p.assign(20, 0);
      if (changeable) {
        p[2] = 0x04;  // WCE
      } else {
        p[2] = uint8_t((m.wce ? 0x04 : 0) | (m.rcd ? 0x01 : 0));
      }
      break;
    case 0x0a:  // control
      p.assign(12, 0);
      if (changeable) {
        p[2] = 0x04;  // D_SENSE
        p[4] = 0x08;  // SWP
      } else {
        p[2] = m.d_sense ? 0x04 : 0;
        p[3] = 0x10;  // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
        p[4] = m.swp ? 0x08 : 0;
        Put16(&p[8], 0xffff);  // BUSY TIMEOUT PERIOD: unlimited
      }
      break;
    case 0x1c:  // informational exceptions control
      p.assign(12, 0);
      if (changeable) {
        p[2] = 0x1c;  // EWASC, DEXCPT, TEST
        p[3] = 0x0f;  // MRIE
        Put32(&p[4], 0xffffffff);
        Put32(&p[8], 0xffffffff);
      } else {
        p[2] = uint8_t((m.ewasc ? 0x10 : 0) | (m.dexcpt ? 0x08 : 0) | (m.test ? 0x04 : 0));
        p[3] = m.mrie & 0x0f;
        Put32(&p[4], m.interval_timer);
        Put32(&p[8], m.report_count);
      }
      break;
    default:
      return p;
  }
  p[0] = code;
  p[1] = uint8_t(p.size() - 2);
  return p;
}

// Applies a page from MODE SELECT to `m`; the caller has already checked that only
// changeable bits differ. Returns false (with the bad byte) for invalid values.
bool ApplyPage(const uint8_t* p, ModeParams* m, uint16_t* bad_byte) {
  switch (p[0] & 0x3f) {
    case 0x08:
      m->wce = p[2] & 0x04;
      return true;
    case 0x0a:
      m->d_sense = p[2] & 0x04;
      m->swp = p[4] & 0x08;
      return true;
    case 0x1c:
      m->ewasc = p[2] & 0x10;
      m->dexcpt = p[2] & 0x08;
      m->test = p[2] & 0x04;
      m->mrie = p[3] & 0x0f;
      if (m->mrie > 6) {
        *bad_byte = 3;
        return false;
      }
      m->interval_timer = Get32(p + 4);
      m->report_count = Get32(p + 8);
      return true;
    default:
      return true;
  }
}

bool KnownPage(uint8_t code) {
  for (uint8_t c : kPages) {
    if (c == code) return true;
  }
  return false;
}

}  // namespace

void HandleModeSense(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  bool ten = cdb[0] == op::kModeSense10;
  bool dbd = cdb[1] & 0x08;
  bool llbaa = ten && (cdb[1] & 0x10);
  Pc pc = Pc(cdb[2] >> 6);
  uint8_t page = cdb[2] & 0x3f;
  uint8_t subpage = cdb[3];
  uint32_t alloc = ten ? Get16(cdb + 7) : cdb[4];
  LogicalUnit& lu = *cmd->lu;

  if (pc == Pc::kSaved) {
    Fail(std::move(cmd), sense::kSavingParametersNotSupported);
    return;
  }
  std::vector<uint8_t> pages_to_send;
  if (page == 0x3f) {
    if (subpage != 0x00 && subpage != 0xff) {
      FailCdbField(std::move(cmd), 3);
      return;
    }
    pages_to_send.assign(std::begin(kPages), std::end(kPages));
  } else {
    if (!KnownPage(page)) {
      FailCdbField(std::move(cmd), 2, 5);
      return;
    }
    if (subpage != 0x00 && subpage != 0xff) {
      FailCdbField(std::move(cmd), 3);
      return;
    }
    pages_to_send.push_back(page);
  }
  ModeParams m = pc == Pc::kDefault ? DefaultParams(lu) : lu.mode();
  std::vector<uint8_t> d(ten ? 8 : 4, 0);
  uint8_t dsp = 0x10;  // DPOFUA
  if (lu.WriteProtected()) dsp |= 0x80;
  d[ten ? 3 : 2] = dsp;
  if (!dbd) {
    uint32_t bs = lu.block_size();
    uint64_t blocks = lu.num_blocks();
    if (llbaa) {
      d[4] = 0x01;  // LONGLBA
      std::vector<uint8_t> bd(16, 0);
      Put64(&bd[0], blocks);
      Put32(&bd[12], bs);
      d.insert(d.end(), bd.begin(), bd.end());
    } else {
      std::vector<uint8_t> bd(8, 0);
      Put32(&bd[0], blocks > 0xffffffffull ? 0xffffffffu : uint32_t(blocks));
      Put24(&bd[5], bs);
      d.insert(d.end(), bd.begin(), bd.end());
    }
    if (ten) {
      Put16(&d[6], uint16_t(d.size() - 8));
    } else {
      d[3] = uint8_t(d.size() - 4);
    }
  }
  for (uint8_t code : pages_to_send) {
    std::vector<uint8_t> p = RenderPage(code, m, pc == Pc::kChangeable);
    d.insert(d.end(), p.begin(), p.end());
  }
  if (ten) {
    Put16(&d[0], uint16_t(d.size() - 2));
  } else {
    d[0] = uint8_t(std::min<size_t>(d.size() - 1, 255));
  }
  ReturnData(std::move(cmd), d, alloc);
}

void HandleModeSelect(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  bool ten = cdb[0] == op::kModeSelect10;
  bool pf = cdb[1] & 0x10;
  bool sp = cdb[1] & 0x01;
  uint32_t len = ten ? Get16(cdb + 7) : cdb[4];
  cmd->task.cdb_transfer_length = len;
  LogicalUnit& lu = *cmd->lu;
  if (!pf) {
    FailCdbField(std::move(cmd), 1, 4);
    return;
  }
  if (sp) {
    FailCdbField(std::move(cmd), 1, 0);
    return;
  }
  if (len == 0) {
    Complete(std::move(cmd));
    return;
  }
  size_t hdr = ten ? 8 : 4;
  std::span<const uint8_t> data = cmd->task.data_out;
  if (len < hdr || data.size() < len) {
    Fail(std::move(cmd), sense::kParameterListLengthError);
    return;
  }
  data = data.first(len);
  if (data[ten ? 2 : 1] != 0) {  // MEDIUM TYPE
    FailParamField(std::move(cmd), ten ? 2 : 1);
    return;
  }
  size_t bdl = ten ? Get16(&data[6]) : data[3];
  bool longlba = ten && (data[4] & 0x01);
  size_t bd_size = longlba ? 16 : 8;
  if (bdl != 0 && bdl != bd_size) {
    FailParamField(std::move(cmd), ten ? 6 : 3);
    return;
  }
  if (hdr + bdl > data.size()) {
    Fail(std::move(cmd), sense::kParameterListLengthError);
    return;
  }
  if (bdl) {
    const uint8_t* bd = &data[hdr];
    uint32_t bs = longlba ? Get32(bd + 12) : Get24(bd + 5);
    if (bs != lu.block_size()) {
      FailParamField(std::move(cmd), uint16_t(hdr + (longlba ? 12 : 5)));
      return;
    }
  }
  ModeParams cur = lu.mode();
  ModeParams next = cur;
  size_t off = hdr + bdl;
  while (off < data.size()) {
    if (data.size() - off < 2) {
      Fail(std::move(cmd), sense::kParameterListLengthError);
      return;
    }
    const uint8_t* p = &data[off];
    uint8_t code = p[0] & 0x3f;
    if ((p[0] & 0x40) || !KnownPage(code)) {  // SPF: no subpages here
      FailParamField(std::move(cmd), uint16_t(off));
      return;
    }
    std::vector<uint8_t> current = RenderPage(code, cur, false);
    std::vector<uint8_t> mask = RenderPage(code, cur, true);
    if (p[1] != current[1]) {
      FailParamField(std::move(cmd), uint16_t(off + 1));
      return;
    }
    if (data.size() - off < current.size()) {
      Fail(std::move(cmd), sense::kParameterListLengthError);
      return;
    }
    for (size_t i = 2; i < current.size(); ++i) {
      if ((p[i] ^ current[i]) & ~mask[i]) {
        FailParamField(std::move(cmd), uint16_t(off + i));
        return;
      }
    }
    uint16_t bad = 0;
    if (!ApplyPage(p, &next, &bad)) {
      FailParamField(std::move(cmd), uint16_t(off + bad));
      return;
    }
    off += current.size();
  }
  std::string me = cmd->nexus_key;
  // D_SENSE applies to this command's own completion too? No: it was GOOD either way.
  lu.set_mode(next, me);
  Complete(std::move(cmd));
}

}  // namespace iser::scsi
