// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title DevAggregator
/// @notice An AggregatorV3 whose rounds are set field by field, including the ones
///         MockV3Aggregator fixes (answeredInRound, startedAt), so tests can post an
///         incomplete round (answeredInRound < roundId). Unset rounds revert in
///         getRoundData, as Chainlink's aggregators do ("No data present").
contract DevAggregator {
    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
        uint80 answeredInRound;
    }

    uint8 public immutable decimals;
    uint256 public latestRound;
    mapping(uint256 => Round) private _rounds;

    constructor(uint8 decimals_) {
        decimals = decimals_;
    }

    /// @notice Store round `roundId` and make it the latest.
    function setRound(
        uint80 roundId,
        int256 answer,
        uint256 startedAt,
        uint256 updatedAt,
        uint80 answeredInRound
    ) external {
        _rounds[roundId] = Round(answer, startedAt, updatedAt, answeredInRound);
        latestRound = roundId;
    }

    function getRoundData(uint80 roundId)
        public
        view
        returns (uint80, int256, uint256, uint256, uint80)
    {
        Round memory r = _rounds[roundId];
        require(r.updatedAt > 0, "No data present");
        return (roundId, r.answer, r.startedAt, r.updatedAt, r.answeredInRound);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        return getRoundData(uint80(latestRound));
    }
}
