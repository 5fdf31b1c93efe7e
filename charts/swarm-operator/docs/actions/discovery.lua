-- Argo CD resource actions for claudeswarm.io/SwarmSandbox: which of suspend and resume apply now.
-- Both only write the resource (spec.suspend, an annotation); the operator does the pausing, exactly
-- as for `swarm-operator suspend`/`resume` and `kubectl swarm suspend`/`resume`.
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
local deleting = obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil

-- Paused for idleness (spec.idle): resume lifts that too. A budget's pause is lifted by raising the
-- budget, not by an action, so it does not enable resume.
local idle = false
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Suspended" and c.status == "True" and c.reason == "Idle" then
      idle = true
    end
  end
end

actions["suspend"] = {["iconClass"] = "fa fa-fw fa-pause", ["disabled"] = suspended or deleting}
actions["resume"] = {["iconClass"] = "fa fa-fw fa-play", ["disabled"] = deleting or not (suspended or idle)}
return actions
