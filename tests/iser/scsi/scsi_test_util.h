// Fixture that drives a Device with raw CDBs, as the iSCSI target would.
#ifndef TESTS_ISER_SCSI_SCSI_TEST_UTIL_H_
#define TESTS_ISER_SCSI_SCSI_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "iser/scsi/cdb.h"
#include "iser/scsi/scsi_device.h"
#include "iser/scsi/sense.h"
#include "tests/iser/scsi/memory_block_store.h"

namespace iser::scsi::testing {

struct Result {
  ScsiStatus status = ScsiStatus::kGood;
  std::optional<SenseCode> sense;
  std::vector<uint8_t> raw_sense;
  std::vector<uint8_t> data;  // data_in, data_in_length bytes
  uint32_t cdb_transfer_length = 0;
  bool completed = false;

  bool Good() const { return completed && status == ScsiStatus::kGood; }
  bool Check(SenseCode c) const {
    return completed && status == ScsiStatus::kCheckCondition && sense && *sense == c;
  }
};

inline ItNexus MakeNexus(uint64_t id, const std::string& name, uint64_t isid) {
  ItNexus n;
  n.id = id;
  n.initiator_name = name;
  n.isid = isid;
  char buf[32];
  snprintf(buf, sizeof(buf), ",i,0x%012llx", static_cast<unsigned long long>(isid));
  n.initiator_port = name + buf;
  return n;
}

class ScsiTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBlocks = 2048;
  static constexpr uint32_t kBs = 512;

  void SetUp() override {
    store_ = std::make_shared<MemoryBlockStore>(kBlocks * kBs, kBs);
    LogicalUnitConfig cfg;
    cfg.serial = "SERIAL0001";
    cfg.target_name = "iqn.2024-01.io.iser:target0";
    cfg.naa_id = 0x123456789abcdefull;
    ASSERT_TRUE(dev_.AddLogicalUnit(0, store_, cfg).ok());
    n1_ = MakeNexus(1, "iqn.2024-01.io.iser:init1", 0x23d000000001ull);
    n2_ = MakeNexus(2, "iqn.2024-01.io.iser:init2", 0x23d000000002ull);
    Login(n1_);
    Login(n2_);
  }

  // A new nexus gets a power-on unit attention; consume it like libiscsi does.
  void Login(const ItNexus& n) {
    dev_.NexusCreated(n);
    for (int i = 0; i < 10; ++i) {
      if (Run({0x00, 0, 0, 0, 0, 0}, 0, {}, &n).Good()) return;
    }
    FAIL() << "unit attentions never cleared";
  }

  Result Run(std::vector<uint8_t> cdb, uint32_t edtl_in = 0, std::vector<uint8_t> out = {},
             const ItNexus* nexus = nullptr, uint64_t lun = 0) {
    ScsiTask task;
    task.nexus = nexus ? nexus : &n1_;
    task.lun = lun;
    cdb.resize(std::max<size_t>(cdb.size(), 16), 0);
    task.cdb = cdb;
    std::vector<uint8_t> in(edtl_in, 0xee);
    task.data_in = in;
    task.data_out = out;
    task.expected_transfer_length = out.empty() ? edtl_in : uint32_t(out.size());
    task.data_in_expected = edtl_in > 0;
    task.data_out_expected = !out.empty();
    Result r;
    dev_.Execute(task, [&r] { r.completed = true; });
    while (!r.completed && store_->RunPending() > 0) {
    }
    r.status = task.status;
    r.raw_sense = task.sense;
    r.sense = ParseSense(task.sense);
    r.data.assign(in.begin(), in.begin() + task.data_in_length);
    r.cdb_transfer_length = task.cdb_transfer_length;
    return r;
  }

  // CDB builders.
  static std::vector<uint8_t> Rw10(uint8_t op, uint32_t lba, uint16_t blocks, uint8_t flags = 0) {
    std::vector<uint8_t> c(10, 0);
    c[0] = op;
    c[1] = flags;
    Put32(&c[2], lba);
    Put16(&c[7], blocks);
    return c;
  }
  static std::vector<uint8_t> Rw16(uint8_t op, uint64_t lba, uint32_t blocks, uint8_t flags = 0) {
    std::vector<uint8_t> c(16, 0);
    c[0] = op;
    c[1] = flags;
    Put64(&c[2], lba);
    Put32(&c[10], blocks);
    return c;
  }
  static std::vector<uint8_t> Rw12(uint8_t op, uint32_t lba, uint32_t blocks, uint8_t flags = 0) {
    std::vector<uint8_t> c(12, 0);
    c[0] = op;
    c[1] = flags;
    Put32(&c[2], lba);
    Put32(&c[6], blocks);
    return c;
  }
  static std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = uint8_t(seed + i * 7);
    return v;
  }
  Result Write(uint64_t lba, const std::vector<uint8_t>& data, const ItNexus* n = nullptr) {
    return Run(Rw16(op::kWrite16, lba, uint32_t(data.size() / kBs)), 0, data, n);
  }
  Result Read(uint64_t lba, uint32_t blocks, const ItNexus* n = nullptr) {
    return Run(Rw16(op::kRead16, lba, blocks), blocks * kBs, {}, n);
  }

  Device dev_;
  std::shared_ptr<MemoryBlockStore> store_;
  ItNexus n1_, n2_;
};

}  // namespace iser::scsi::testing

#endif  // TESTS_ISER_SCSI_SCSI_TEST_UTIL_H_
