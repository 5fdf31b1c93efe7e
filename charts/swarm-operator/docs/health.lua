-- Argo CD health check for claudeswarm.io/SwarmSandbox.
-- Reads only what the operator writes: status.observedGeneration, status.phase and the conditions
-- (Ready, Suspended, Completed) with their stable reasons.
local hs = {}

-- Reasons that need a person (fix the spec, the key, the template) or mark an intended end.
-- Kept equal to swarm_operator.conditions.TERMINAL_REASONS by tests/unit/test_argocd.py.
local terminal = {
  InvalidSpec = true,
  AuthenticationFailed = true,
  TemplateNotFound = true,
  TemplateAccessDenied = true,
  InitFailed = true,
  SandboxExpired = true,
  SandboxQuarantined = true,
  DefaultKeyNotAllowed = true,
  TemplateNotAllowed = true,
  OrphanNotAllowed = true,
  NamespaceNotAllowed = true,
  BudgetExceeded = true,
}

local function condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the resource"
  return hs
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Terminating: the sandbox is being torn down"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on the latest spec"
  return hs
end

local ready = condition(status, "Ready")
local message = (ready and ready.message ~= "" and ready.message) or status.message or status.phase or ""

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end

if status.phase == "Failed" or (ready ~= nil and terminal[ready.reason]) then
  hs.status = "Degraded"
  hs.message = ((ready and ready.reason) or "Failed") .. ": " .. message
  return hs
end

-- spec.task.completion: the task is done and the sandbox stopped on purpose (paused or killed).
-- Like a finished Job, that is the state asked for: Healthy, not Suspended or Degraded.
local completed = condition(status, "Completed")
if status.phase == "Succeeded" or (completed ~= nil and completed.status == "True") then
  hs.status = "Healthy"
  hs.message = "Succeeded: " .. ((completed and completed.message ~= "" and completed.message) or message)
  return hs
end

local suspended = condition(status, "Suspended")
if status.phase == "Suspended" or (suspended ~= nil and suspended.status == "True") then
  hs.status = "Suspended"
  hs.message = message
  return hs
end

if status.phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = ((ready and ready.reason) or "AgentsDegraded") .. ": " .. message
  return hs
end

-- Pending, Creating, Initializing: the operator is working on it (or retrying a transient error).
hs.status = "Progressing"
hs.message = message
return hs
