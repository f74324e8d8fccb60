// PERSISTENT RESERVE IN/OUT and RESERVE/RELEASE with two I_T nexuses.
#include "tests/iser/scsi/scsi_test_util.h"

namespace iser::scsi::testing {
namespace {

class PrTest : public ScsiTest {
 protected:
  Result Out(const ItNexus& n, uint8_t action, uint64_t rk, uint64_t sark, uint8_t type = 0,
             uint8_t flags = 0) {
    std::vector<uint8_t> cdb = {op::kPersistentReserveOut, action, type, 0, 0, 0, 0, 0, 24, 0};
    std::vector<uint8_t> p(24, 0);
    Put64(&p[0], rk);
    Put64(&p[8], sark);
    p[20] = flags;
    return Run(cdb, 0, p, &n);
  }
  Result In(const ItNexus& n, uint8_t action, uint16_t alloc = 1024) {
    std::vector<uint8_t> cdb = {op::kPersistentReserveIn, action,         0, 0, 0, 0, 0,
                                uint8_t(alloc >> 8),      uint8_t(alloc), 0};
    return Run(cdb, alloc, {}, &n);
  }
  std::vector<uint64_t> Keys() {
    Result r = In(n1_, 0);
    std::vector<uint64_t> k;
    for (size_t off = 8; off + 8 <= r.data.size(); off += 8) k.push_back(Get64(&r.data[off]));
    return k;
  }
  // Returns {reserved, key, type}.
  std::tuple<bool, uint64_t, uint8_t> Reservation() {
    Result r = In(n1_, 1);
    if (Get32(&r.data[4]) == 0) return {false, 0, 0};
    return {true, Get64(&r.data[8]), uint8_t(r.data[21] & 0x0f)};
  }
  bool CanRead(const ItNexus& n) {
    Result r = Read(0, 1, &n);
    EXPECT_TRUE(r.Good() || r.status == ScsiStatus::kReservationConflict);
    return r.Good();
  }
  bool CanWrite(const ItNexus& n) {
    Result r = Write(0, Pattern(kBs, 1), &n);
    EXPECT_TRUE(r.Good() || r.status == ScsiStatus::kReservationConflict);
    return r.Good();
  }
  const std::vector<uint8_t> kTur = {op::kTestUnitReady, 0, 0, 0, 0, 0};
};

TEST_F(PrTest, RegisterUnregister) {
  EXPECT_TRUE(Keys().empty());
  ASSERT_TRUE(Out(n1_, 0, 0, 0xaa).Good());
  ASSERT_TRUE(Out(n2_, 6, 0x1234, 0xbb).Good());  // REGISTER AND IGNORE: rk ignored
  EXPECT_EQ(Keys(), (std::vector<uint64_t>{0xaa, 0xbb}));
  // Wrong key on REGISTER: conflict.
  EXPECT_EQ(Out(n1_, 0, 0xbb, 0xcc).status, ScsiStatus::kReservationConflict);
  // Unregistered nexus with non-zero key.
  ItNexus n3 = MakeNexus(3, "iqn.x:3", 3);
  Login(n3);
  EXPECT_EQ(Out(n3, 0, 0xaa, 0xcc).status, ScsiStatus::kReservationConflict);
  // Change key, then unregister.
  ASSERT_TRUE(Out(n1_, 0, 0xaa, 0xcc).Good());
  EXPECT_EQ(Keys(), (std::vector<uint64_t>{0xcc, 0xbb}));
  ASSERT_TRUE(Out(n1_, 0, 0xcc, 0).Good());
  ASSERT_TRUE(Out(n2_, 0, 0xbb, 0).Good());
  EXPECT_TRUE(Keys().empty());
  // Generation advanced on each change.
  EXPECT_EQ(Get32(&In(n1_, 0).data[0]), 5u);
}

TEST_F(PrTest, ParameterValidation) {
  std::vector<uint8_t> cdb = {op::kPersistentReserveOut, 0, 0, 0, 0, 0, 0, 0, 20, 0};
  EXPECT_TRUE(Run(cdb, 0, std::vector<uint8_t>(20, 0)).Check(sense::kParameterListLengthError));
  EXPECT_TRUE(Out(n1_, 0, 0, 1, 0, 0x01).Check(sense::kInvalidFieldInParameterList));  // APTPL
  EXPECT_TRUE(Out(n1_, 0, 0, 1, 0, 0x08).Check(sense::kInvalidFieldInParameterList));  // SPEC_I_PT
  ASSERT_TRUE(Out(n1_, 0, 0, 1).Good());
  EXPECT_TRUE(Out(n1_, 1, 1, 0, 0x02).Check(sense::kInvalidFieldInCdb));  // bad type
  EXPECT_TRUE(Out(n1_, 1, 1, 0, 0x11).Check(sense::kInvalidFieldInCdb));  // bad scope
  EXPECT_TRUE(Out(n1_, 7, 1, 0).Check(sense::kInvalidFieldInCdb));        // REGISTER AND MOVE
  for (uint8_t sa = 4; sa < 0x20; ++sa) {
    EXPECT_TRUE(In(n1_, sa).Check(sense::kInvalidFieldInCdb)) << int(sa);
  }
}

struct AccessCase {
  uint8_t type;
  bool reg_read, reg_write, unreg_read, unreg_write;
};

TEST_F(PrTest, AccessRulesPerType) {
  const AccessCase cases[] = {
      {3, false, false, false, false},  // EA
      {1, true, false, true, false},    // WE
      {6, true, true, false, false},    // EARO
      {5, true, true, true, false},     // WERO
      {8, true, true, false, false},    // EAAR
      {7, true, true, true, false},     // WEAR
  };
  for (const AccessCase& c : cases) {
    SCOPED_TRACE(int(c.type));
    ASSERT_TRUE(Out(n1_, 6, 0, 0x11).Good());
    ASSERT_TRUE(Out(n2_, 6, 0, 0x22).Good());
    ASSERT_TRUE(Out(n1_, 1, 0x11, 0, c.type).Good());
    auto [reserved, key, type] = Reservation();
    EXPECT_TRUE(reserved);
    EXPECT_EQ(type, c.type);
    EXPECT_EQ(key, (c.type == 7 || c.type == 8) ? 0u : 0x11u);
    EXPECT_TRUE(CanRead(n1_));
    EXPECT_TRUE(CanWrite(n1_));
    EXPECT_EQ(CanRead(n2_), c.reg_read);
    EXPECT_EQ(CanWrite(n2_), c.reg_write);
    // TEST UNIT READY, INQUIRY and READ CAPACITY never conflict.
    EXPECT_TRUE(Run(kTur, 0, {}, &n2_).Good());
    ASSERT_TRUE(Out(n2_, 0, 0x22, 0).Good());
    EXPECT_EQ(CanRead(n2_), c.unreg_read);
    EXPECT_EQ(CanWrite(n2_), c.unreg_write);
    EXPECT_TRUE(Run({op::kInquiry, 0, 0, 0, 36, 0}, 36, {}, &n2_).Good());
    ASSERT_TRUE(Out(n1_, 2, 0x11, 0, c.type).Good());
    EXPECT_FALSE(std::get<0>(Reservation()));
    ASSERT_TRUE(Out(n1_, 0, 0x11, 0).Good());
    Run(kTur, 0, {}, &n2_);  // consume any unit attention
    Run(kTur, 0, {}, &n1_);
  }
}

TEST_F(PrTest, OwnershipWhenHolderUnregisters) {
  for (uint8_t t : {1, 3, 5, 6, 7, 8}) {
    SCOPED_TRACE(int(t));
    bool all_registrants = t == 7 || t == 8;
    ASSERT_TRUE(Out(n1_, 6, 0, 0x11).Good());
    ASSERT_TRUE(Out(n2_, 6, 0, 0x22).Good());
    ASSERT_TRUE(Out(n1_, 1, 0x11, 0, t).Good());
    ASSERT_TRUE(Out(n1_, 0, 0x11, 0).Good());
    EXPECT_EQ(std::get<0>(Reservation()), all_registrants);
    if (all_registrants) {
      // n2 is a holder too and may release.
      ASSERT_TRUE(Out(n2_, 2, 0x22, 0, t).Good());
      EXPECT_FALSE(std::get<0>(Reservation()));
    } else if (t == 5 || t == 6) {
      EXPECT_TRUE(Run(kTur, 0, {}, &n2_).Check(sense::kReservationsReleased));
    }
    ASSERT_TRUE(Out(n2_, 0, 0x22, 0).Good());
    Run(kTur, 0, {}, &n2_);
  }
}

TEST_F(PrTest, ReserveConflictsAndRelease) {
  ASSERT_TRUE(Out(n1_, 6, 0, 0x11).Good());
  ASSERT_TRUE(Out(n2_, 6, 0, 0x22).Good());
  ASSERT_TRUE(Out(n1_, 1, 0x11, 0, 3).Good());
  EXPECT_TRUE(Out(n1_, 1, 0x11, 0, 3).Good());  // same again: fine
  EXPECT_EQ(Out(n1_, 1, 0x11, 0, 1).status, ScsiStatus::kReservationConflict);
  EXPECT_EQ(Out(n2_, 1, 0x22, 0, 3).status, ScsiStatus::kReservationConflict);
  // RELEASE by a non-holder is a no-op; with the wrong type by the holder an error.
  EXPECT_TRUE(Out(n2_, 2, 0x22, 0, 3).Good());
  EXPECT_TRUE(std::get<0>(Reservation()));
  EXPECT_TRUE(Out(n1_, 2, 0x11, 0, 1).Check(sense::kInvalidReleaseOfPr));
  // Wrong reservation key.
  EXPECT_EQ(Out(n1_, 2, 0x99, 0, 3).status, ScsiStatus::kReservationConflict);
  EXPECT_TRUE(Out(n1_, 2, 0x11, 0, 3).Good());
  EXPECT_FALSE(std::get<0>(Reservation()));
}

TEST_F(PrTest, ClearRemovesEverything) {
  ASSERT_TRUE(Out(n1_, 6, 0, 0x11).Good());
  ASSERT_TRUE(Out(n2_, 6, 0, 0x22).Good());
  ASSERT_TRUE(Out(n1_, 1, 0x11, 0, 1).Good());
  ASSERT_TRUE(Out(n1_, 3, 0x11, 0).Good());
  EXPECT_TRUE(Keys().empty());
  EXPECT_FALSE(std::get<0>(Reservation()));
  EXPECT_TRUE(Run(kTur, 0, {}, &n2_).Check(sense::kReservationsPreempted));
  EXPECT_TRUE(Run(kTur, 0, {}, &n1_).Good());
}

TEST_F(PrTest, PreemptRemovesRegistrationAndTakesReservation) {
  ASSERT_TRUE(Out(n1_, 6, 0, 0x11).Good());
  ASSERT_TRUE(Out(n2_, 6, 0, 0x22).Good());
  ASSERT_TRUE(Out(n2_, 1, 0x22, 0, 1).Good());
  ASSERT_TRUE(Out(n1_, 4, 0x11, 0x22, 3).Good());
  EXPECT_EQ(Keys(), (std::vector<uint64_t>{0x11}));
  auto [reserved, key, type] = Reservation();
  EXPECT_TRUE(reserved);
  EXPECT_EQ(key, 0x11u);
  EXPECT_EQ(type, 3);
  EXPECT_TRUE(Run(kTur, 0, {}, &n2_).Check(sense::kRegistrationsPreempted));
  EXPECT_EQ(Write(0, Pattern(kBs, 0), &n2_).status, ScsiStatus::kReservationConflict);
  // Preempting a key nobody holds, without reservation semantics: conflict.
  EXPECT_EQ(Out(n1_, 4, 0x11, 0x77, 3).status, ScsiStatus::kReservationConflict);
  ASSERT_TRUE(Out(n1_, 3, 0x11, 0).Good());
}

TEST_F(PrTest, PreemptWithoutReservation) {
  ASSERT_TRUE(Out(n1_, 6, 0, 0x11).Good());
  ASSERT_TRUE(Out(n2_, 6, 0, 0x22).Good());
  ASSERT_TRUE(Out(n1_, 5, 0x11, 0x22, 0).Good());  // PREEMPT AND ABORT
  EXPECT_EQ(Keys(), (std::vector<uint64_t>{0x11}));
  EXPECT_TRUE(Out(n1_, 4, 0x11, 0, 0).Check(sense::kInvalidFieldInParameterList));
}

TEST_F(PrTest, ReadFullStatusAndCapabilities) {
  ASSERT_TRUE(Out(n1_, 6, 0, 0x11).Good());
  ASSERT_TRUE(Out(n1_, 1, 0x11, 0, 5).Good());
  Result r = In(n1_, 3);
  ASSERT_TRUE(r.Good());
  ASSERT_GE(r.data.size(), 8u + 24u);
  EXPECT_EQ(Get64(&r.data[8]), 0x11u);
  EXPECT_EQ(r.data[8 + 12] & 1, 1);  // R_HOLDER
  EXPECT_EQ(r.data[8 + 13], 5);
  uint32_t tid_len = Get32(&r.data[8 + 20]);
  EXPECT_EQ(r.data.size(), 8u + 24u + tid_len);
  EXPECT_EQ(r.data[8 + 24], 0x45);
  std::string name(reinterpret_cast<const char*>(&r.data[8 + 28]));
  EXPECT_EQ(name, n1_.initiator_port);
  Result c = In(n1_, 2);
  ASSERT_TRUE(c.Good());
  EXPECT_EQ(Get16(&c.data[0]), 8);
  EXPECT_EQ(c.data[4], 0xea);
  EXPECT_EQ(c.data[5], 0x01);
  // READ KEYS truncated to the allocation length.
  Result k = In(n1_, 0, 4);
  ASSERT_TRUE(k.Good());
  EXPECT_EQ(k.data.size(), 4u);
  ASSERT_TRUE(Out(n1_, 3, 0x11, 0).Good());
}

TEST_F(PrTest, ReserveReleaseSpc2) {
  const std::vector<uint8_t> reserve6 = {op::kReserve6, 0, 0, 0, 0, 0};
  const std::vector<uint8_t> release6 = {op::kRelease6, 0, 0, 0, 0, 0};
  ASSERT_TRUE(Run(reserve6).Good());
  EXPECT_TRUE(Run(reserve6).Good());  // the holder may reserve again
  EXPECT_EQ(Run(reserve6, 0, {}, &n2_).status, ScsiStatus::kReservationConflict);
  EXPECT_EQ(Run(kTur, 0, {}, &n2_).status, ScsiStatus::kReservationConflict);
  EXPECT_EQ(Read(0, 1, &n2_).status, ScsiStatus::kReservationConflict);
  EXPECT_TRUE(Run({op::kInquiry, 0, 0, 0, 36, 0}, 36, {}, &n2_).Good());
  EXPECT_TRUE(Run(release6, 0, {}, &n2_).Good());  // no-op for a non-holder
  EXPECT_EQ(Read(0, 1, &n2_).status, ScsiStatus::kReservationConflict);
  EXPECT_TRUE(Run(release6).Good());
  EXPECT_TRUE(Read(0, 1, &n2_).Good());
  // Dropped when the holder's nexus goes away or on LU reset.
  ASSERT_TRUE(Run(reserve6).Good());
  dev_.NexusLost(n1_);
  EXPECT_TRUE(Read(0, 1, &n2_).Good());
  ASSERT_TRUE(Run(reserve6, 0, {}, &n2_).Good());
  dev_.LogicalUnitReset(0, n1_);
  Run(kTur, 0, {}, &n1_);
  EXPECT_TRUE(Run(reserve6).Good());
}

TEST_F(PrTest, Reserve6ConflictsWithPersistentReservations) {
  ASSERT_TRUE(Out(n1_, 6, 0, 0x11).Good());
  EXPECT_EQ(Run({op::kReserve6, 0, 0, 0, 0, 0}).status, ScsiStatus::kReservationConflict);
  ASSERT_TRUE(Out(n1_, 0, 0x11, 0).Good());
  EXPECT_TRUE(Run({op::kReserve6, 0, 0, 0, 0, 0}).Good());
  // ... and PR commands from another nexus conflict with RESERVE(6).
  EXPECT_EQ(Out(n2_, 6, 0, 0x22).status, ScsiStatus::kReservationConflict);
}

}  // namespace
}  // namespace iser::scsi::testing
