//! Whether a host's tasks fit on the other hosts: the check made before draining it.
//!
//! ECS reports a container instance's totals (tasks, CPU and memory reserved), not each
//! task's size, so a host's tasks are taken as equal shares of what it reserves,
//! rounded up. They are then placed on the free room of the remaining hosts, the hosts
//! with most free memory first.

use capstan_aws_api::ContainerInstance;

use super::tasks_on;

/// Free (or needed) CPU units and memory (MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Room {
    /// CPU units.
    pub cpu: u32,
    /// Memory, MiB.
    pub memory: u32,
}

impl Room {
    /// What a container instance has left.
    pub(super) fn free(h: &ContainerInstance) -> Self {
        Self {
            cpu: h.remaining_cpu,
            memory: h.remaining_memory,
        }
    }
}

/// The tasks on `h` as equal shares: how many, and the size of each.
pub(super) fn shares(h: &ContainerInstance) -> (u32, Room) {
    let n = tasks_on(h);
    let share =
        |registered: u32, remaining: u32| registered.saturating_sub(remaining).div_ceil(n.max(1));
    (
        n,
        Room {
            cpu: share(h.registered_cpu, h.remaining_cpu),
            memory: share(h.registered_memory, h.remaining_memory),
        },
    )
}

/// How many tasks of `size` fit in `room` (a zero dimension does not limit).
fn slots(room: Room, size: Room) -> u32 {
    let per = |free: u32, need: u32| free.checked_div(need).unwrap_or(u32::MAX);
    per(room.cpu, size.cpu).min(per(room.memory, size.memory))
}

/// Places `count` tasks of `size` on `pool` (the free room of each remaining host),
/// hosts with most free memory first: the pool after, or `None` if they do not all fit.
pub(super) fn place(pool: &[Room], size: Room, count: u32) -> Option<Vec<Room>> {
    let mut pool = pool.to_vec();
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(pool.get(*i).map(|r| (r.memory, r.cpu))));
    let mut left = count;
    for i in order {
        if left == 0 {
            break;
        }
        let Some(room) = pool.get_mut(i) else {
            continue;
        };
        let n = slots(*room, size).min(left);
        room.cpu = room.cpu.saturating_sub(size.cpu.saturating_mul(n));
        room.memory = room.memory.saturating_sub(size.memory.saturating_mul(n));
        left -= n;
    }
    (left == 0).then_some(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(cpu: u32, memory: u32) -> Room {
        Room { cpu, memory }
    }

    #[test]
    fn tasks_fill_the_roomiest_hosts_first_and_must_all_fit() {
        let pool = [room(4096, 2048), room(2048, 6000)];
        let after = place(&pool, room(1024, 2048), 3).expect("2 + 1 fit");
        assert_eq!(after, vec![room(3072, 0), room(0, 1904)]);
        assert_eq!(place(&pool, room(1024, 2048), 4), None, "only 3 fit");
        assert_eq!(place(&pool, room(1024, 2048), 0), Some(pool.to_vec()));
        assert_eq!(place(&[], room(1, 1), 1), None);
        // Zero-sized tasks fit anywhere there is a host.
        assert!(place(&[room(0, 0)], room(0, 0), 5).is_some());
    }

    #[test]
    fn shares_split_what_the_host_reserves() {
        let h = ContainerInstance {
            arn: "ci".into(),
            ec2_instance_id: "i-1".into(),
            status: capstan_aws_api::ContainerInstanceStatus::Active,
            availability_zone: "a".into(),
            registered_cpu: 4096,
            registered_memory: 7482,
            remaining_cpu: 4096 - 3000,
            remaining_memory: 7482 - 3001,
            running_tasks: 2,
            pending_tasks: 1,
            agent_connected: true,
            registered_at: capstan_core::Timestamp::UNIX_EPOCH,
        };
        assert_eq!(shares(&h), (3, room(1000, 1001)));
        let empty = ContainerInstance {
            running_tasks: 0,
            pending_tasks: 0,
            ..h
        };
        assert_eq!(shares(&empty).0, 0);
    }
}
