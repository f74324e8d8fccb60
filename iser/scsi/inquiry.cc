// INQUIRY: standard data (SPC-4 6.6.2) and the VPD pages 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"

namespace iser::scsi {

namespace {

constexpr uint8_t kPeripheralDisk = 0x00;
constexpr uint8_t kProtocolIscsi = 0x05;

void PutPadded(uint8_t* p, const std::string& s, size_t width) {
  std::memset(p, ' ', width);
  std::memcpy(p, s.data(), std::min(s.size(), width));
}

std::vector<uint8_t> StandardInquiry(const LogicalUnitConfig& c, uint8_t peripheral) {
  std::vector<uint8_t> d(96, 0);
  d[0] = peripheral;
  d[1] = 0x00;  // RMB = 0
  d[2] = 0x06;  // VERSION: SPC-4
  d[3] = 0x12;  // HISUP = 1, RESPONSE DATA FORMAT = 2
  d[4] = uint8_t(d.size() - 5);
  d[5] = 0x10;  // TPGS = 01b: implicit ALUA (REPORT TARGET PORT GROUPS)
  d[6] = 0x00;
  d[7] = 0x02;  // CMDQUE
  PutPadded(&d[8], c.vendor, 8);
  PutPadded(&d[16], c.product, 16);
  PutPadded(&d[32], c.revision, 4);
  // Version descriptors (SPC-4 table 51).
  const uint16_t versions[] = {
      0x00c0,  // SAM-5 (no version claimed)
      0x0960,  // iSCSI (no version claimed)
      0x0460,  // SPC-4 (no version claimed)
      0x04c0,  // SBC-3 (no version claimed)
  };
  for (size_t i = 0; i < std::size(versions); ++i) Put16(&d[58 + 2 * i], versions[i]);
  return d;
}

// Appends one designation descriptor (SPC-4 7.8.6.1).
void AddDesignator(std::vector<uint8_t>& out, uint8_t code_set, bool piv, uint8_t assoc,
                   uint8_t type, const std::vector<uint8_t>& id) {
  out.push_back(uint8_t((piv ? kProtocolIscsi << 4 : 0) | code_set));
  out.push_back(uint8_t((piv ? 0x80 : 0) | (assoc << 4) | type));
  out.push_back(0);
  out.push_back(uint8_t(id.size()));
  out.insert(out.end(), id.begin(), id.end());
}

std::vector<uint8_t> ScsiNameString(const std::string& name) {
  std::vector<uint8_t> v(name.begin(), name.end());
  v.push_back(0);                       // null-terminated
  while (v.size() % 4) v.push_back(0);  // multiple of four
  if (v.size() > 252) v.resize(252);
  return v;
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

std::vector<uint8_t> DeviceIdentification(const LogicalUnit& lu, const ItNexus* nexus) {
  const LogicalUnitConfig& c = lu.config();
  std::vector<uint8_t> out;
  // NAA IEEE Registered Extended (type 6): 4-bit NAA, 24-bit OUI (locally administered
  // placeholder), 36 bits vendor specific + 64-bit extension.
  uint64_t id = c.naa_id ? c.naa_id : Fnv1a(c.serial + "/" + std::to_string(lu.lun()));
  uint64_t ext = Fnv1a(c.serial + c.target_name + std::to_string(lu.lun()));
  std::vector<uint8_t> naa(16);
  Put64(&naa[0], (uint64_t(6) << 60) | (id & 0x0fffffffffffffffull));
  Put64(&naa[8], ext);
  AddDesignator(out, 0x1, false, 0, 0x3, naa);
  // T10 vendor identification: vendor (8) + product (16) + serial.
  std::vector<uint8_t> t10(24);
  PutPadded(&t10[0], c.vendor, 8);
  PutPadded(&t10[8], c.product, 16);
  std::string serial = c.serial.empty() ? std::to_string(id) : c.serial;
  t10.insert(t10.end(), serial.begin(), serial.end());
  AddDesignator(out, 0x2, false, 0, 0x1, t10);
  uint16_t rtpi = nexus ? nexus->relative_target_port : 1;
  uint16_t tpgt = nexus ? nexus->target_portal_group_tag : 1;
  if (!c.target_name.empty()) {
    // SCSI name string of the target device and of the target port (RFC 7143 sec 13.4 +
    // SPC-4: "<name>,t,0x<tpgt>").
    AddDesignator(out, 0x3, true, 2, 0x8, ScsiNameString(c.target_name));
    char port[32];
    snprintf(port, sizeof(port), ",t,0x%04x", tpgt);
    AddDesignator(out, 0x3, true, 1, 0x8, ScsiNameString(c.target_name + port));
  }
  std::vector<uint8_t> rel(4, 0);
  Put16(&rel[2], rtpi);
  AddDesignator(out, 0x1, true, 1, 0x4, rel);
  std::vector<uint8_t> tpg(4, 0);
  Put16(&tpg[2], tpgt);
  AddDesignator(out, 0x1, true, 1, 0x5, tpg);
  return out;
}

std::vector<uint8_t> VpdPage(uint8_t code, const std::vector<uint8_t>& body) {
  std::vector<uint8_t> d(4, 0);
  d[0] = kPeripheralDisk;
  d[1] = code;
  Put16(&d[2], uint16_t(body.size()));
  d.insert(d.end(), body.begin(), body.end());
  return d;
}

constexpr uint8_t kSupportedVpd[] = {0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2};

bool BuildVpd(LogicalUnit& lu, const ItNexus* nexus, uint8_t page, std::vector<uint8_t>* out) {
  const BlockLimits& lim = lu.limits();
  bool thin = lu.store().supports_unmap();
  switch (page) {
    case 0x00:
      *out =
          VpdPage(0x00, std::vector<uint8_t>(std::begin(kSupportedVpd), std::end(kSupportedVpd)));
      return true;
    case 0x80: {
      std::string serial = lu.config().serial;
      if (serial.empty()) serial = std::to_string(lu.lun());
      *out = VpdPage(0x80, std::vector<uint8_t>(serial.begin(), serial.end()));
      return true;
    }
    case 0x83:
      *out = VpdPage(0x83, DeviceIdentification(lu, nexus));
      return true;
    case 0xb0: {
      std::vector<uint8_t> b(0x3c, 0);
      b[0] = 0x00;  // WSNZ = 0: WRITE SAME with 0 blocks writes to the end of the medium
      b[1] = lim.max_compare_write_blocks;
      Put16(&b[2], 1);  // OPTIMAL TRANSFER LENGTH GRANULARITY
      Put32(&b[4], lim.max_transfer_blocks);
      Put32(&b[8], lim.optimal_transfer_blocks);
      Put32(&b[12], lim.max_transfer_blocks);  // MAXIMUM PREFETCH LENGTH
      if (thin) {
        Put32(&b[16], lim.max_unmap_blocks);
        Put32(&b[20], lim.max_unmap_descriptors);
        Put32(&b[24], 1u << lim.physical_exponent);  // OPTIMAL UNMAP GRANULARITY
        Put32(&b[28], 0x80000000u);                  // UGAVALID, alignment 0
      }
      Put64(&b[32], lim.max_write_same_blocks);
      *out = VpdPage(0xb0, b);
      return true;
    }
    case 0xb1: {
      std::vector<uint8_t> b(0x3c, 0);
      Put16(&b[0], 0x0001);  // MEDIUM ROTATION RATE: non-rotating medium
      b[3] = 0x00;           // NOMINAL FORM FACTOR not reported
      *out = VpdPage(0xb1, b);
      return true;
    }
    case 0xb2: {
      std::vector<uint8_t> b(4, 0);
      b[0] = 0;  // THRESHOLD EXPONENT
      if (thin) {
        b[1] = 0x80 | 0x40 | 0x20 | 0x04;  // LBPU, LBPWS, LBPWS10, LBPRZ
        b[2] = 0x02;                       // PROVISIONING TYPE: thin
      }
      *out = VpdPage(0xb2, b);
      return true;
    }
    default:
      return false;
  }
}

}  // namespace

void HandleInquiry(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  bool evpd = cdb[1] & 0x01;
  uint8_t page = cdb[2];
  uint16_t alloc = Get16(cdb + 3);
  if (cdb[1] & 0xfe) {  // CMDDT (obsolete) and reserved bits
    FailCdbField(std::move(cmd), 1);
    return;
  }
  if (!evpd) {
    if (page != 0) {
      FailCdbField(std::move(cmd), 2);
      return;
    }
    std::vector<uint8_t> d = StandardInquiry(cmd->lu->config(), kPeripheralDisk);
    ReturnData(std::move(cmd), d, alloc);
    return;
  }
  std::vector<uint8_t> d;
  if (!BuildVpd(*cmd->lu, cmd->task.nexus, page, &d)) {
    FailCdbField(std::move(cmd), 2);
    return;
  }
  ReturnData(std::move(cmd), d, alloc);
}

void HandleInquiryNoLun(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  uint16_t alloc = cmd->cdb_size() >= 5 ? Get16(cdb + 3) : 0;
  if (cmd->cdb_size() < 6 || (cdb[1] & 0x01) || cdb[2] != 0) {
    Fail(std::move(cmd), sense::kLunNotSupported);
    return;
  }
  // Peripheral qualifier 011b, device type 1Fh: no LU can be addressed here.
  std::vector<uint8_t> d = StandardInquiry(LogicalUnitConfig{}, 0x7f);
  ReturnData(std::move(cmd), d, alloc);
}

}  // namespace iser::scsi
